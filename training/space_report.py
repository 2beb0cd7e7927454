"""Measure the vector space side by side: base / centred / +maps (sprachbund, all, random, per language).

``python -m training.space_report [--router DIR] [--output benchmarks/results/space.json]``

Every variant is fitted on the training split (and chooses what it chooses on the dev split)
with the same data, then scored on held-out data it never saw:

* **test**: top-1 both directions on the test split of every router language that has one
  (Firefox strings), mean over languages;
* **ood**: the same on VLC's strings (another program; nothing shared with Firefox);
* **cross**: pairs of languages from different sprachbunds, joined on Firefox message ids
  (test split of both), both sides served by the router;
* **table3**: the paper's Table 3 pairs;
* **heads**: emoji-topic heads in the English, pivot and every-language settings.

Vectors are the shared base encoder's, cached on disk, and every variant goes through the
runtime's own :class:`~sprachbund_router.space.VectorSpace`. ``python -m
benchmarks.ship_artifacts space DIR`` copies a router's fitted space into ``training/artifacts`` (package data used
by ``sbr setup``).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sprachbund_router.config import invert_sprachbunds
from sprachbund_router.paths import cache_root, data_dir, default_router_dir
from sprachbund_router.space import SpaceSpec, VectorSpace, unit
from training.corpus import read_bitext, read_ood_pairs, read_pairs
from training.evaluation import TABLE3_PAIRS
from training.space import SpaceSettings, VectorCache, ensure_space_data, fit_space, top1_both
from training.sprachbunds import random_groups

logger = logging.getLogger(__name__)

#: The held-out sets, in report order.
SET_NAMES = ("test", "ood", "help", "cross", "table3")
#: Shrinkage weights the variants with extra pairs choose from on dev (finer than the default grid).
FINE_SHRINK = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 8.0)
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


def run(router_dir: Path, output: Path | None, heads: bool = True, corpus: Path | None = None,
        encoder: Any = None, cache_file: Path | None = None, batch_size: int = 64, n: int = 1000,
        extra: Sequence[str] = (), max_extra: int = 2000) -> dict[str, Any]:
    """Fit every variant and score it; returns the result (also written to ``output``).

    ``encoder`` (default: the router's shared encoder, loaded here) gives the base vectors;
    ``corpus`` defaults to the cache's corpus. The router's own space, when it has one, is
    scored as it is ("shipped"). ``extra`` (e.g. ``["libreoffice"]``) adds the map variants
    again with ``max_extra`` more training pairs per language from those sources.
    """
    from sprachbund_router.config import RouterConfig

    started = time.time()
    cfg = RouterConfig.load(router_dir)
    groups = cfg.sprachbunds
    corpus = corpus or data_dir() / "corpus"
    if encoder is None:
        from sprachbund_router.encoder import SentenceEncoder

        encoder = SentenceEncoder.from_pretrained(router_dir / cfg.encoders[cfg.shared_encoder].path, cfg.pooling,  # type: ignore[operator]
                                                  cfg.encoders[cfg.shared_encoder])
    enc = encoder
    cache = VectorCache(lambda texts: enc.encode(texts, batch_size=batch_size),
                        cache_file if cache_file is not None else cache_root() / "vectors" / "base.npz")
    if extra:  # the data stage: fitting itself fetches nothing
        ensure_space_data(corpus, groups, SpaceSettings(maps="all", extra_pairs=list(extra)))
    sets = held_out_sets(corpus, cfg.languages, groups, n)
    logger.info("encoding held-out sets: %s", {k: len(v) for k, v in sets.items()})
    for items in sets.values():
        for _, _, pairs in items.values():
            cache([t for pair in pairs for t in pair])
    cache.save()

    def score(serve: Served) -> dict[str, Any]:
        return score_sets(lambda key, lang, texts: serve(lang, cache(texts), False), sets)

    variants: dict[str, dict[str, Any]] = {}
    spaces: dict[str, VectorSpace | None] = {}

    def add(name: str, space: VectorSpace | None, what: str, seconds: float = 0.0, extra: dict | None = None) -> None:
        t0 = time.time()
        variants[name] = {"what": what, **score(served_by(space)), "fit_seconds": round(seconds, 1), **(extra or {})}
        spaces[name] = space
        logger.info("%-40s %s (%.0fs)", name, "  ".join(f"{k} {variants[name][k]:.2f}" for k in SET_NAMES
                                                      if variants[name].get(k) is not None), time.time() - t0)

    def fitted(name: str, what: str, settings: SpaceSettings, on: Mapping[str, Sequence[str]] = groups) -> Any:
        t0 = time.time()
        f = fit_space(cache, corpus, on, settings)
        cache.save()
        add(name, make_space(f, on, settings), what, time.time() - t0,
            {"maps": {g: c for g, c in f.sprachbund_maps.items()}, "dev": f.report.get("dev")})
        return f

    add("base", None, "the base encoder's vectors, unchanged")
    where = invert_sprachbunds(groups)
    for name, spec in cfg.spaces.items():
        shipped = VectorSpace.load(router_dir, spec, where)
        shipped.check_encoder(enc, "torch", name)
        add(f"router as built ({name} space)", shipped, "the router's own space file, as served",
            extra={"maps": dict(spec.sprachbund_maps)})
    # ---- centring: sources and sizes of the means
    for source, size in (("interface", 300), ("interface", 30), ("interface", 100), ("udhr", 300)):
        fitted(f"centred ({source}, {size})", f"minus the language mean over {size} {source} texts", SpaceSettings(
            mean_source=source, mean_sentences=size, maps="none"))
    centred = fit_space(cache, corpus, groups, SpaceSettings(maps="none"))
    # a language without a mean of its own: its sprachbund's (leave-one-out), the global one, or none
    missing: dict[str, float] = {}
    for policy in ("sprachbund", "global", "none"):
        scores = []
        for lang, (_, _, pairs) in sets["test"].items():
            x, e = cache([p[0] for p in pairs]), cache([p[1] for p in pairs])
            means = dict(centred.means)
            means.pop(f"lang:{lang}", None)
            group = next(g for g, ms in groups.items() if lang in ms)
            others = [means[f"lang:{m}"] for m in groups[group] if f"lang:{m}" in means]
            if others:
                means[f"sprachbund:{group}"] = np.mean(others, axis=0)
            s = SpaceSettings(maps="none", missing_mean=policy)
            sp = make_space(type(centred)(means, {}, dict.fromkeys(groups), {}), groups, s)
            serve = served_by(sp)
            scores.append(top1_both(serve(lang, x, False), serve("en", e, False)))
        missing[policy] = round(100 * float(np.mean(scores)), 2)
    # a text that fell back: the global mean or nothing (English side served as usual)
    fallback: dict[str, float] = {}
    for policy in ("global", "none"):
        sp = make_space(centred, groups, SpaceSettings(maps="none", fallback_mean=policy))
        serve = served_by(sp)
        fallback[policy] = round(100 * float(np.mean([
            top1_both(serve(lang, cache([p[0] for p in pairs]), True), serve("en", cache([p[1] for p in pairs]), False))
            for lang, (_, _, pairs) in sets["test"].items()])), 2)

    # ---- maps on top of centring (interface, 300)
    fitted("+ map: all (orthogonal)", "one Procrustes map for all languages", SpaceSettings(maps="all"))
    fitted("+ map: all (ridge)", "one ridge map for all languages", SpaceSettings(maps="all", map_kind="ridge"))
    fitted("+ maps: sprachbund (orthogonal)", "a Procrustes map per sprachbund, no shrinkage",
           SpaceSettings(maps="sprachbund", shrink=[0.0]))
    fitted("+ maps: sprachbund (orth., shrunk)", "per sprachbund, shrunk towards the all map (dev picks the weight)",
           SpaceSettings(maps="sprachbund"))
    fitted("+ maps: sprachbund (ridge, shrunk)", "ridge map per sprachbund, shrunk towards the all map",
           SpaceSettings(maps="sprachbund", map_kind="ridge"))
    fitted("+ maps: sprachbund auto", "per sprachbund: own map, the all map or none, chosen on dev (the default router)",
           SpaceSettings(maps="auto"))
    for seed in (1, 2, 3):
        rnd = random_groups(groups, seed)
        fitted(f"+ maps: random{seed} (orth., shrunk)", f"random groups of the sprachbunds' sizes (seed {seed})",
               SpaceSettings(maps="sprachbund"), rnd)
        fitted(f"+ maps: random{seed} auto", f"random groups (seed {seed}), same procedure as the default",
               SpaceSettings(maps="auto"), rnd)
    per_lang = {lang: [lang] for lang in sorted({m for ms in groups.values() for m in ms})}
    fitted("+ maps: per language (orth.)", "a Procrustes map per language, no shrinkage", SpaceSettings(maps="sprachbund",
           shrink=[0.0]), per_lang)
    fitted("+ maps: per language (shrunk)", "a map per language, shrunk towards the all map", SpaceSettings(maps="sprachbund"),
           per_lang)

    if extra:  # the same variants with more training pairs per language (equal data for every grouping)
        more = {"extra_pairs": list(extra), "max_extra_pairs": max_extra, "shrink": list(FINE_SHRINK)}
        tag = f"+{'+'.join(extra)} {max_extra}"
        fitted(f"{tag}: map all", "one Procrustes map for all languages", SpaceSettings(maps="all", **more))
        fitted(f"{tag}: maps sprachbund (orth.)", "a Procrustes map per sprachbund, no shrinkage",
               SpaceSettings(maps="sprachbund", **more | {"shrink": [0.0]}))
        fitted(f"{tag}: maps sprachbund (orth., shrunk)", "per sprachbund, shrunk towards the all map (dev picks the weight)",
               SpaceSettings(maps="sprachbund", **more))
        fitted(f"{tag}: maps sprachbund auto", "per sprachbund: own map, the all map or none, chosen on dev",
               SpaceSettings(maps="auto", **more))
        for seed in (1, 2, 3):
            rnd = random_groups(groups, seed)
            fitted(f"{tag}: maps random{seed} (orth., shrunk)", f"random groups of the sprachbunds' sizes (seed {seed})",
                   SpaceSettings(maps="sprachbund", **more), rnd)
            fitted(f"{tag}: maps random{seed} auto", f"random groups (seed {seed}), same procedure as the default",
                   SpaceSettings(maps="auto", **more), rnd)
        fitted(f"{tag}: maps per language (shrunk)", "a map per language, shrunk towards the all map",
               SpaceSettings(maps="sprachbund", **more), per_lang)

    for prefix in ["+ maps:"] + ([f"{tag}: maps"] if extra else []):
        for kind, key in (("orth., shrunk", "(orth., shrunk)"), ("auto", "auto")):
            rs = [variants[f"{prefix} random{s} {key}"] for s in (1, 2, 3)]
            variants[f"{prefix} random mean ({kind})"] = {
                "what": f"mean of the three random-group variants ({kind})",
                **{k: round(float(np.mean([r[k] for r in rs])), 2) for k in SET_NAMES if rs[0].get(k) is not None},
                "seeds": {k: [r[k] for r in rs] for k in SET_NAMES if rs[0].get(k) is not None}}

    result: dict[str, Any] = {
        "task": "vector space of the default router",
        "router": str(router_dir),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, Python {platform.python_version()}",
        "command": f"python -m training.space_report --n {n}" + ("" if heads else " --no-heads")
                   + (f" --extra {','.join(extra)} --max-extra {max_extra}" if extra else ""),
        "metric": "top-1 accuracy (%), mean of both directions; 'test' = mean over languages",
        "pairs_per_set": n,
        "data": {"test_languages": sorted(sets["test"]), "ood_languages": sorted(sets["ood"]), "cross_pairs": sorted(sets["cross"]),
                 "table3_pairs": sorted(sets["table3"]), "test": "Firefox test split (English texts hashed into dev/test/train)",
                 "ood": "VLC strings (Debian vlc-l10n), nothing shared with Firefox",
                 "help_languages": sorted(sets["help"]),
                 "help": "LibreOffice help paragraphs (Debian libreoffice-help-*), never trained on, none equal to a "
                         "training text"},
        "missing_mean_policy": missing,
        "fallback_mean_policy": fallback,
        "variants": variants,
    }
    if heads:
        names = ["base", "centred (interface, 300)", "+ map: all (orthogonal)", "+ maps: sprachbund auto"]
        names += [f"{tag}: map all", f"{tag}: maps sprachbund auto"] if extra else []
        result["heads"] = heads_side_by_side(cfg, corpus, cache, {k: spaces[k] for k in names})
        cache.save()
    result["seconds"] = round(time.time() - started, 1)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    return result


def heads_side_by_side(cfg: Any, corpus: Path, cache: VectorCache,
                       spaces: Mapping[str, VectorSpace | None]) -> dict[str, Any]:
    """Emoji-topic heads in the three settings on each variant's vectors (mean accuracy, %)."""
    import tempfile

    from sprachbund_router.heads import ClassificationHead
    from training.heads import FALLBACK, HeadTrainingConfig, train_heads

    out: dict[str, Any] = {}
    for name, space in spaces.items():
        serve = served_by(space)

        def embed(group: str, lang: str, texts: list[str], _serve: Served = serve) -> np.ndarray:
            return _serve(lang, cache(texts), group == FALLBACK)

        with tempfile.TemporaryDirectory() as tmp:
            heads = train_heads(corpus, cfg.sprachbunds, cfg.pivots, embed, Path(tmp) / "heads",
                                HeadTrainingConfig(max_per_language=200, max_test_per_language=100))
            for task, per_group in heads.items():
                if ":" not in task:
                    continue
                per_lang: dict[str, float] = {}
                for p in per_group.values():
                    per_lang.update({k: v for k, v in ClassificationHead.load(Path(tmp) / p).config.metrics.items() if k != "mean"})
                out.setdefault(task.split(":")[1], {})[name] = round(100 * float(np.mean(list(per_lang.values()))), 2)
    return out


def markdown(result: Mapping[str, Any]) -> str:
    """The side-by-side table of a result."""
    base = result["variants"]["base"]
    keys = [k for k in SET_NAMES if base.get(k) is not None]
    titles = {"test": "test (mean over languages)", "ood": "out-of-domain (VLC)", "help": "out-of-domain (help paragraphs)",
              "cross": "cross-sprachbund", "table3": "Table 3 pairs"}
    lines = ["| variant | " + " | ".join(titles[k] for k in keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, v in result["variants"].items():
        cells = [f"{v[k]:.2f} ({v[k] - base[k]:+.2f})" if name != "base" else f"{v[k]:.2f}" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--router", type=Path, default=None, help="router directory (default: the embedded default router)")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/space.json"))
    parser.add_argument("--no-heads", action="store_true", help="skip the emoji-topic heads")
    parser.add_argument("--n", type=int, default=1000, help="pairs per language / language pair (at most)")
    parser.add_argument("--extra", default="", help="extra training-pair sources for more map variants (libreoffice)")
    parser.add_argument("--max-extra", type=int, default=2000, help="extra pairs per language and source")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    router_dir = args.router or default_router_dir()
    result = run(router_dir, args.output, heads=not args.no_heads, n=args.n,
                 extra=[e for e in args.extra.split(",") if e], max_extra=args.max_extra)
    logger.info("\n%s", markdown(result))
    logger.info("missing-mean policy: %s; fallback-mean policy: %s", result["missing_mean_policy"], result["fallback_mean_policy"])
    if "heads" in result:
        logger.info("heads: %s", json.dumps(result["heads"]))


if __name__ == "__main__":
    main()
