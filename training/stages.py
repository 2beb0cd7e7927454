"""Two stages of the build pipeline (:mod:`training.pipeline`, which ``sbr setup`` and ``sbr
train build`` both run): sprachbunds with their analysis, and the task heads on the vectors the
router serves.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sprachbund_router.router import SprachbundRouter
from training.analysis import write_report
from training.heads import FALLBACK, Embed, HeadTrainingConfig, train_heads
from training.sprachbunds import Linkage, cluster_languages, k_selection, pivots


@dataclass
class Sprachbunds:
    """Clustering result: groups, their pivots, the K table and the analysis summary."""

    groups: dict[str, list[str]]
    pivots: dict[str, str]
    k_table: list[dict[str, float]]
    analysis: dict[str, Any]


def find_sprachbunds(
    languages: Sequence[str],
    vectors: np.ndarray,
    *,
    k: int,
    linkage: Linkage,
    centre: bool,
    analysis_dir: Path,
    title: str,
    uriel: Mapping[str, Sequence[str]] | None,
    must_link: Sequence[tuple[str, str]] = (),
) -> Sprachbunds:
    """Cluster the language vectors into ``k`` sprachbunds, pick pivots, score K = 2..8 and write
    the analysis report (figures, agreement with families) to ``analysis_dir``. ``must_link`` pairs
    share a sprachbund (routing-aware sprachbunds)."""
    groups = cluster_languages(languages, vectors, k, linkage, centre, must_link=must_link)
    piv = pivots(groups, languages, vectors, centre)
    k_table = k_selection(vectors, range(2, min(9, len(languages))), linkage, centre)
    analysis = write_report(analysis_dir, languages, vectors, groups, piv, k_table, linkage=linkage, centre=centre,
                            title=title, uriel=uriel)
    if must_link:  # routing-aware sprachbunds: say which languages were kept together, and why
        with (analysis_dir / "report.md").open("a", encoding="utf-8") as f:
            f.write("\n## Must-link constraints (routing-aware sprachbunds)\n\nLanguages the language identifier "
                    "confuses on the dev split were kept in one sprachbund (Ward clustering from the linked "
                    f"components): {', '.join(f'{a}-{b}' for a, b in must_link)}.\n")
        analysis["must_link"] = [list(p) for p in must_link]
    return Sprachbunds(groups, piv, k_table, analysis)


def served_embed(router: SprachbundRouter) -> Embed:
    """What a head of each sprachbund sees: the router's served vectors (the group's encoder, or
    the language's own where it has one in the same space, then the text language's centring and
    map); group ``"*"`` takes the fallback path."""
    cfg = router.config
    raw: dict[tuple[str, str], np.ndarray] = {}  # (encoder, text) -> pooled vector: groups sharing weights encode once

    def embed(group: str, lang: str, texts: list[str]) -> np.ndarray:
        fallback = group == FALLBACK
        asked = cfg.sprachbund_encoders[group] if not fallback else cfg.fallback_encoder
        name = asked if fallback or lang not in cfg.language_to_sprachbund else cfg.row_encoder(asked, cfg.encoder_of(lang))
        todo = [t for t in dict.fromkeys(texts) if (name, t) not in raw]
        if todo:
            for t, v in zip(todo, router.encoder(name).encode(todo)):
                raw[name, t] = v
        vecs = np.stack([raw[name, t] for t in texts])
        if name not in router.spaces:
            return vecs
        return router.apply_space(vecs, [None if fallback else lang] * len(texts), name)  # None: the fallback path

    return embed


def train_sprachbund_heads(
    corpus: Path,
    sprachbunds: Sprachbunds,
    languages: Sequence[str],
    vectors: np.ndarray,
    centre: bool,
    router: SprachbundRouter,
    heads_dir: Path,
    config: HeadTrainingConfig,
) -> dict[str, dict[str, str]]:
    """Task heads for every sprachbund plus the fallback head over all languages, trained on
    the vectors ``router`` serves (see :func:`served_embed`); ``heads_dir`` is written afresh."""
    every = sorted(languages)
    groups = {**sprachbunds.groups, FALLBACK: every}
    group_pivots = {**sprachbunds.pivots, **pivots({FALLBACK: every}, languages, vectors, centre)}
    shutil.rmtree(heads_dir, ignore_errors=True)
    return train_heads(corpus, groups, group_pivots, served_embed(router), heads_dir, config)
