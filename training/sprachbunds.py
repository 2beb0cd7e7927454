"""Stages 3 and 4 of the pipeline (`training/pipeline.py`): language representations and representation sprachbunds (paper §3.1).

* A language's vector is the mean sentence vector of the base encoder over up to
  ``max_sentences`` units of that language (paper: last-layer ``[CLS]``; mean pooling is
  offered too).
* Sprachbunds are an agglomerative clustering of those vectors under cosine geometry.
  Vectors of one encoder share a large common direction (anisotropy: raw cosines between
  languages are all above ~0.9), so by default the mean language vector is subtracted
  before clustering (``centre=True``); ``ward`` linkage on the unit-normalised centred
  vectors is Euclidean Ward on the sphere, i.e. it minimises within-group cosine spread.
  ``average``/``complete`` linkage with the cosine metric reproduce the paper's setup exactly.
* The pivot of a sprachbund is ``argmax_i sum_j cos(v_i, v_j)`` over its members (§5.2).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from sprachbund_router.encoder import SentenceEncoder
from sprachbund_router.space import unit

logger = logging.getLogger(__name__)

Linkage = Literal["ward", "average", "complete", "single"]


@dataclass
class LanguageVectors:
    """One vector per language and the languages left out (with the reason)."""

    languages: list[str]
    vectors: np.ndarray
    n_sentences: dict[str, int]
    skipped: dict[str, str] = field(default_factory=dict)


def compute_language_vectors(
    encoder: SentenceEncoder,
    texts: Mapping[str, Sequence[str]],
    *,
    mode: Literal["cls", "mean"] = "cls",
    layer: int = -1,
    max_sentences: int = 200,
    min_sentences: int = 20,
    batch_size: int = 32,
    seed: int = 13,
) -> LanguageVectors:
    """Mean sentence vector per language (paper §3.1: last-layer [CLS]).

    Languages with fewer than ``min_sentences`` units are left out and reported in
    ``skipped``; languages with more than ``max_sentences`` are sampled (fixed seed).

    Raises:
        ValueError: no language has enough text.
    """
    from tqdm.auto import tqdm

    langs, vecs, counts, skipped = [], [], {}, {}
    for lang in tqdm(sorted(texts), desc="language vectors", unit="lang"):
        units = [t for t in texts[lang] if t.strip()]
        if len(units) < min_sentences:
            skipped[lang] = f"only {len(units)} units (< min_sentences={min_sentences})"
            logger.info("skipping %s: %s", lang, skipped[lang])
            continue
        if len(units) > max_sentences:
            units = random.Random(f"{seed}-{lang}").sample(units, max_sentences)
        v = encoder.encode_layers(units, [layer], batch_size=batch_size, normalize=False, mode=mode)
        vecs.append(next(iter(v.values())).mean(axis=0))
        langs.append(lang)
        counts[lang] = len(units)
    if not langs:
        raise ValueError(f"no language has at least {min_sentences} units of text")
    return LanguageVectors(langs, np.stack(vecs).astype(np.float32), counts, skipped)


def prepare(vectors: np.ndarray, centre: bool = True) -> np.ndarray:
    """Unit-normalised (optionally centred) vectors: the space clustering works in."""
    x = np.asarray(vectors, dtype=np.float64)
    if centre:
        x = x - x.mean(axis=0, keepdims=True)
    return unit(x)


def cosine_matrix(vectors: np.ndarray, centre: bool = True) -> np.ndarray:
    """Pairwise cosine similarity of language vectors (in the clustering space)."""
    x = prepare(vectors, centre)
    return x @ x.T


def cluster_labels(vectors: np.ndarray, k: int, linkage: Linkage = "ward", centre: bool = True) -> np.ndarray:
    """Agglomerative clustering into ``k`` groups (cosine geometry); deterministic."""
    from sklearn.cluster import AgglomerativeClustering

    if not 1 <= k <= len(vectors):
        raise ValueError(f"k={k} must be between 1 and the number of languages ({len(vectors)})")
    x = prepare(vectors, centre)
    metric = "euclidean" if linkage == "ward" else "cosine"
    return AgglomerativeClustering(n_clusters=k, linkage=linkage, metric=metric).fit_predict(x)


def link_components(languages: Sequence[str], links: Sequence[tuple[str, str]]) -> list[list[int]]:
    """Connected components (index lists) of the must-link graph; unlinked languages stand alone."""
    parent = list(range(len(languages)))
    pos = {lang: i for i, lang in enumerate(languages)}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in links:
        if a in pos and b in pos:
            parent[root(pos[a])] = root(pos[b])
    comps: dict[int, list[int]] = {}
    for i in range(len(languages)):
        comps.setdefault(root(i), []).append(i)
    return sorted(comps.values())


def must_link_labels(vectors: np.ndarray, k: int, components: Sequence[Sequence[int]], centre: bool = True) -> np.ndarray:
    """Ward clustering into ``k`` groups that keeps each component (must-linked languages) whole.

    Ward's criterion starting from the components as clusters: repeatedly merge the two clusters
    whose union raises the within-cluster sum of squares least (size-weighted centroid distance),
    in the same normalised space as :func:`cluster_labels`. Without links (every component a single
    language) this is plain Ward linkage.

    Raises:
        ValueError: fewer components than ``k``.
    """
    if len(components) < k:
        raise ValueError(f"must-link constraints leave {len(components)} groups of languages, fewer than k={k}")
    x = prepare(vectors, centre)
    members = [list(c) for c in components]
    sizes = np.array([len(c) for c in members], dtype=np.float64)
    cents = np.stack([x[c].mean(axis=0) for c in members])
    alive = list(range(len(members)))
    while len(alive) > k:
        best, pair = np.inf, (0, 0)
        for ai, a in enumerate(alive):
            b_idx = alive[ai + 1:]
            if not b_idx:
                continue
            d = ((cents[b_idx] - cents[a]) ** 2).sum(axis=1) * (sizes[a] * sizes[b_idx]) / (sizes[a] + sizes[b_idx])
            j = int(d.argmin())
            if d[j] < best:
                best, pair = float(d[j]), (a, b_idx[j])
        a, b = pair
        cents[a] = (sizes[a] * cents[a] + sizes[b] * cents[b]) / (sizes[a] + sizes[b])
        sizes[a] += sizes[b]
        members[a] += members[b]
        alive.remove(b)
    labels = np.empty(len(x), dtype=np.int64)
    for lab, c in enumerate(alive):
        labels[members[c]] = lab
    return labels


def groups_from_labels(languages: Sequence[str], labels: np.ndarray) -> dict[str, list[str]]:
    """Name groups ``sb1..sbK``: largest first, ties by first language (stable across runs)."""
    members: dict[int, list[str]] = {}
    for lang, lab in zip(languages, labels.tolist()):
        members.setdefault(lab, []).append(lang)
    ordered = sorted(members.values(), key=lambda m: (-len(m), sorted(m)[0]))
    return {f"sb{i + 1}": sorted(m) for i, m in enumerate(ordered)}


def cluster_languages(
    languages: Sequence[str], vectors: np.ndarray, k: int = 4, linkage: Linkage = "ward", centre: bool = True,
    must_link: Sequence[tuple[str, str]] = (),
) -> dict[str, list[str]]:
    """Representation sprachbunds: group name -> sorted languages.

    ``must_link`` pairs (e.g. languages the identifier confuses, :func:`training.calibration.confusion_links`)
    end up in the same sprachbund (Ward linkage only).
    """
    if must_link:
        if linkage != "ward":
            raise ValueError("must-link clustering is implemented for ward linkage")
        return groups_from_labels(languages, must_link_labels(vectors, k, link_components(languages, must_link), centre))
    return groups_from_labels(languages, cluster_labels(vectors, k, linkage, centre))


def pivots(
    groups: Mapping[str, Sequence[str]], languages: Sequence[str], vectors: np.ndarray, centre: bool = True
) -> dict[str, str]:
    """Pivot language per group: highest summed cosine to its group (paper §5.2)."""
    sims = cosine_matrix(vectors, centre)
    pos = {lang: i for i, lang in enumerate(languages)}
    out = {}
    for name, members in groups.items():
        idx = [pos[m] for m in members]
        scores = sims[np.ix_(idx, idx)].sum(axis=1)
        out[name] = members[int(scores.argmax())]
    return out


def random_groups(groups: Mapping[str, Sequence[str]], seed: int = 13) -> dict[str, list[str]]:
    """The paper's baseline: random clusters with the same sizes as ``groups``."""
    langs = sorted(lang for members in groups.values() for lang in members)
    random.Random(seed).shuffle(langs)
    out, start = {}, 0
    for i, members in enumerate(groups.values()):
        out[f"random{i + 1}"] = sorted(langs[start : start + len(members)])
        start += len(members)
    return out


def k_selection(
    vectors: np.ndarray, ks: Sequence[int] = range(2, 9), linkage: Linkage = "ward", centre: bool = True
) -> list[dict[str, float]]:
    """Silhouette score (cosine) and smallest group size for each K."""
    from sklearn.metrics import silhouette_score

    x = prepare(vectors, centre)
    rows = []
    for k in ks:
        if k >= len(vectors):
            break
        labels = cluster_labels(vectors, k, linkage, centre)
        sizes = np.bincount(labels)
        rows.append({"k": int(k), "silhouette": round(float(silhouette_score(x, labels, metric="cosine")), 4),
                     "smallest_group": int(sizes.min()), "largest_group": int(sizes.max())})
    return rows
