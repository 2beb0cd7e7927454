"""Retrieval metrics on aligned sentence pairs (row i of the source translates row i of the target)."""

from __future__ import annotations

import numpy as np

from sprachbund_router.index import top_k_cosine


def top1_accuracy(queries: np.ndarray, corpus: np.ndarray) -> float:
    """Share of queries whose nearest corpus vector (cosine) is their own translation.

    Both arrays are L2-normalised and aligned: ``queries[i]`` translates ``corpus[i]``.
    """
    if queries.shape != corpus.shape:
        raise ValueError(f"aligned sets must have the same shape, got {queries.shape} and {corpus.shape}")
    idx, _ = top_k_cosine(queries, corpus, 1)
    return float((idx[:, 0] == np.arange(len(queries))).mean())


def bidirectional_accuracy(xx: np.ndarray, en: np.ndarray) -> dict[str, float]:
    """Top-1 accuracy xx->en, en->xx and their mean (the paper's Table 3 reports the mean)."""
    a, b = top1_accuracy(xx, en), top1_accuracy(en, xx)
    return {"xx2en": a, "en2xx": b, "mean": (a + b) / 2}


def paired_bootstrap(a: dict[str, float], b: dict[str, float], resamples: int = 2000, seed: int = 0) -> dict[str, object]:
    """Mean of ``a - b`` over the units (languages, language pairs) both score, with a 95% interval
    from ``resamples`` bootstrap resamples of those units."""
    keys = sorted(set(a) & set(b))
    if not keys:
        raise ValueError("paired_bootstrap: the two systems share no scored unit")
    d = np.array([a[k] - b[k] for k in keys], dtype=float)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(resamples, len(d)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"mean_difference": round(float(d.mean()), 2), "ci95": [round(float(lo), 2), round(float(hi), 2)], "units": len(keys)}
