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
