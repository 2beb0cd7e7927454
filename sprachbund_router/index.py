"""A saved set of corpus vectors to search by cosine similarity."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sprachbund_router.config import load_tensors, save_tensors
from sprachbund_router.errors import CheckpointError, InvalidInputError


def check_top_k(top_k: int, n: int) -> int:
    """Validate ``top_k`` against a corpus of ``n`` items; returns ``min(top_k, n)``."""
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise InvalidInputError(f"top_k must be a positive int, got {top_k!r}")
    return min(top_k, n)


def top_k_cosine(queries: np.ndarray, corpus: np.ndarray, top_k: int, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Top-k corpus rows for each query row by dot product (vectors must be L2-normalised).

    Queries are processed in chunks so memory stays bounded for large query sets.
    Returns (indices ``[n_q, k]``, scores ``[n_q, k]``), best first; ties break by lower index.
    """
    k = check_top_k(top_k, len(corpus))
    idx_out = np.empty((len(queries), k), dtype=np.int64)
    score_out = np.empty((len(queries), k), dtype=np.float32)
    for start in range(0, len(queries), chunk):
        sims = queries[start : start + chunk] @ corpus.T
        if k < sims.shape[1]:
            part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        else:
            part = np.tile(np.arange(sims.shape[1]), (len(sims), 1))
        part_scores = np.take_along_axis(sims, part, axis=1)
        order = np.lexsort((part, -part_scores), axis=1)
        idx_out[start : start + chunk] = np.take_along_axis(part, order, axis=1)
        score_out[start : start + chunk] = np.take_along_axis(part_scores, order, axis=1)
    return idx_out, score_out


@dataclass
class VectorIndex:
    """Normalised corpus vectors and the encoder that made them.

    Queries searched against an index must be encoded by the same encoder; the router
    enforces this through :attr:`encoder`.

    Attributes:
        vectors: float32 ``[n, dim]``, L2-normalised.
        encoder: name of the router encoder that produced the vectors.
        texts: the corpus texts (optional, kept for display).
    """

    vectors: np.ndarray
    encoder: str
    texts: list[str] | None = None

    def __len__(self) -> int:
        return len(self.vectors)

    def search(self, query_vectors: np.ndarray, top_k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (indices, scores) per query vector."""
        if query_vectors.ndim != 2 or query_vectors.shape[1] != self.vectors.shape[1]:
            raise InvalidInputError(
                f"query vectors of shape {query_vectors.shape} do not match index dim {self.vectors.shape[1]}"
            )
        return top_k_cosine(query_vectors, self.vectors, top_k)

    def save(self, path: str | Path) -> Path:
        """Save as one safetensors file (texts and encoder name in its metadata)."""
        path = Path(path)
        save_tensors(path, {"vectors": self.vectors}, {"encoder": self.encoder, "texts": self.texts})
        return path

    @classmethod
    def load(cls, path: str | Path) -> VectorIndex:
        """Load an index saved by :meth:`save`."""
        tensors, meta = load_tensors(path)
        if "vectors" not in tensors or "encoder" not in meta:
            raise CheckpointError(f"{path} is not a sprachbund-router index")
        texts = meta.get("texts")
        vectors = tensors["vectors"]
        if texts is not None and len(texts) != len(vectors):
            raise CheckpointError(f"{path} is corrupt: {len(texts)} texts for {len(vectors)} vectors")
        return cls(vectors=vectors, encoder=meta["encoder"], texts=texts)
