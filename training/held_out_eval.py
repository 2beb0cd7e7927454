"""Held-out sets of the corpus and how a vector-space variant is scored on them (top-1 both
directions): what the space report (``python -m benchmarks.space_report``) and an adapter build's
report stage (:mod:`training.adapter_report`) share.

* **test**: the test split of every router language that has one (Firefox strings);
* **ood**: VLC's strings (another program; nothing shared with Firefox);
* **help**: LibreOffice help paragraphs, when built;
* **cross**: pairs of languages from different sprachbunds, joined on Firefox message ids;
* **table3**: the paper's Table 3 pairs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sprachbund_router.config import invert_sprachbunds
from sprachbund_router.space import SpaceSpec, VectorSpace, unit
from training.corpus import read_bitext, read_ood_pairs, read_pairs
from training.evaluation import TABLE3_PAIRS
from training.space import SpaceSettings, top1_both

#: The held-out sets, in report order.
SET_NAMES = ("test", "ood", "help", "cross", "table3")
Served = Callable[[str, np.ndarray, bool], np.ndarray]  # (language, raw vectors, as fallback) -> served vectors


def make_space(fitted: Any, groups: Mapping[str, Sequence[str]], settings: SpaceSettings) -> VectorSpace:
    """A runtime space from a fitting result."""
    spec = SpaceSpec(path="spaces/variant.safetensors", centring=settings.centring, missing_mean=settings.missing_mean,  # type: ignore[arg-type]
                     fallback_mean=settings.fallback_mean, anchor=settings.anchor,  # type: ignore[arg-type]
                     sprachbund_maps=dict(fitted.sprachbund_maps))
    return VectorSpace(spec, fitted.means, fitted.maps, invert_sprachbunds(groups))


def served_by(space: VectorSpace | None) -> Served:
    """The function that turns raw vectors of a language into a variant's vectors."""
    def serve(lang: str, raw: np.ndarray, fallback: bool = False) -> np.ndarray:
        if space is None:
            return unit(raw)
        n = len(raw)
        return space.serve(raw, [lang] * n, [fallback] * n)

    return serve


def cross_pairs(groups: Mapping[str, Sequence[str]], sizes: Mapping[str, int], per_pair: int = 2) -> list[str]:
    """Pairs of languages from different sprachbunds: the ``per_pair`` best-resourced of each."""
    ranked = {g: sorted((m for m in ms if sizes.get(m, 0) >= 100 and m != "en"), key=lambda m: -sizes[m])[:per_pair]
              for g, ms in groups.items()}
    names = sorted(ranked)
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            out += [f"{x}-{y}" for x, y in zip(ranked[a], ranked[b])]
    return out


#: Held-out evaluation sets: name -> {key: (side-A language, side-B language, pairs)}.
HeldOut = dict[str, dict[str, tuple[str, str, list[tuple[str, str]]]]]


def held_out_sets(corpus: Path, languages: Sequence[str], groups: Mapping[str, Sequence[str]], n: int = 1000) -> HeldOut:
    """The test, out-of-domain (VLC strings; LibreOffice help paragraphs when built), cross-sprachbund
    and Table 3 sets (at least 100 pairs each, at most ``n``: the first ``n`` of each split, whose
    order is a fixed shuffle)."""
    test = {lang: read_pairs(corpus, lang, "test")[:n] for lang in languages if lang != "en"}
    test = {lang: p for lang, p in test.items() if len(p) >= 100}
    ood = {lang: read_ood_pairs(corpus, lang)[:n] for lang in languages if lang != "en"}
    cross = {p: read_bitext(corpus, *p.split("-"), n=n) for p in cross_pairs(groups, {k: len(v) for k, v in test.items()})}
    t3 = {p: read_bitext(corpus, *p.split("-"), n=n) for p in TABLE3_PAIRS}
    from training.libreoffice import read_help_set

    help_set = {lang: read_help_set(corpus, lang)[:n] for lang in languages if lang != "en"}
    return {
        "help": {lang: (lang, "en", p) for lang, p in help_set.items() if len(p) >= 100},
        "test": {lang: (lang, "en", p) for lang, p in test.items()},
        "ood": {lang: (lang, "en", p) for lang, p in ood.items() if len(p) >= 100},
        "cross": {p: (*p.split("-"), b) for p, b in cross.items() if len(b) >= 100},  # type: ignore[misc]
        "table3": {p: (*p.split("-"), b) for p, b in t3.items() if len(b) >= 100},  # type: ignore[misc]
    }


def score_sets(serve: Callable[[str, str, list[str]], np.ndarray], sets: HeldOut) -> dict[str, Any]:
    """Mean top-1 (both directions, %) per set, and per language / pair.

    ``serve(set_key_language, lang, texts)`` gives the variant's vectors of texts of ``lang``.
    """
    out: dict[str, Any] = {}
    for name, items in sets.items():
        per = {key: top1_both(serve(key, a, [x for x, _ in pairs]), serve(key, b, [y for _, y in pairs]))
               for key, (a, b, pairs) in items.items()}
        out[name] = round(100 * float(np.mean(list(per.values()))), 2) if per else None
        out[f"per_{name}"] = {k: round(100 * v, 2) for k, v in per.items()}
    return out
