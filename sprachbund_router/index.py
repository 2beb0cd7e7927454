"""A saved set of corpus vectors to search by cosine similarity.

An index file is one safetensors file: tensor ``vectors`` and metadata with the format
version, a SHA-256 checksum of the vectors and texts, and the identity of the encoder that
made them (router encoder name, weights source, pooling, prefix, vector space, and the
encoder's vector of a probe text). A damaged file, or an index made by another encoder than
the router's, is refused (see :meth:`SprachbundRouter.check_index`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sprachbund_router.errors import CheckpointError, InvalidInputError
from sprachbund_router.tensors import load_tensors, save_tensors

logger = logging.getLogger(__name__)

INDEX_FORMAT = "sprachbund-router-index"
INDEX_FORMAT_VERSION = 2


def check_top_k(top_k: int, n: int, warn: bool = True) -> int:
    """Validate ``top_k`` against a corpus of ``n`` items; returns ``min(top_k, n)`` (with a warning
    when that is fewer than asked)."""
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise InvalidInputError(f"top_k must be a positive int, got {top_k!r}")
    if top_k > n and warn:
        logger.warning("top_k %d is more than the %d corpus texts: %d hits per query are returned", top_k, n, n)
    return min(top_k, n)


def _merge_top_k(best_i: np.ndarray, best_s: np.ndarray, sims: np.ndarray, offset: int, k: int,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of the running (indices, scores) and a block of scores whose first column is
    corpus row ``offset``; best first, ties by lower index."""
    if k < sims.shape[1]:
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    else:
        part = np.tile(np.arange(sims.shape[1]), (len(sims), 1))
    best_i = np.concatenate([best_i, part + offset], axis=1)
    best_s = np.concatenate([best_s, np.take_along_axis(sims, part, axis=1).astype(np.float32)], axis=1)
    order = np.lexsort((best_i, -best_s), axis=1)[:, :k]
    return np.take_along_axis(best_i, order, axis=1), np.take_along_axis(best_s, order, axis=1)


def top_k_cosine(queries: np.ndarray, corpus: np.ndarray, top_k: int, chunk: int = 4096,
                 block: int = 131_072) -> tuple[np.ndarray, np.ndarray]:
    """Top-k corpus rows for each query row by dot product (vectors must be L2-normalised).

    Queries are processed ``chunk`` rows at a time against ``block`` corpus rows at a time (a
    memory-mapped corpus is read block by block), so memory stays bounded by ``chunk x block``
    scores whatever the sizes. Returns (indices ``[n_q, k]``, scores ``[n_q, k]``), best first;
    ties break by lower index.
    """
    k = check_top_k(top_k, len(corpus), warn=False)
    idx_out = np.empty((len(queries), k), dtype=np.int64)
    score_out = np.empty((len(queries), k), dtype=np.float32)
    for qs in range(0, len(queries), chunk):
        q = queries[qs : qs + chunk]
        best_i = np.empty((len(q), 0), dtype=np.int64)
        best_s = np.empty((len(q), 0), dtype=np.float32)
        for cs in range(0, len(corpus), block):
            sims = q @ np.asarray(corpus[cs : cs + block]).T
            best_i, best_s = _merge_top_k(best_i, best_s, sims, cs, k)
        idx_out[qs : qs + len(q)], score_out[qs : qs + len(q)] = best_i, best_s
    return idx_out, score_out


#: How a query and a corpus text are scored: cosine, or ratio margin (Artetxe & Schwenk 2019).
SCORINGS = ("cosine", "margin")
#: Neighbours on each side of the ratio margin.
MARGIN_K = 10


def check_scoring(scoring: str) -> str:
    """Validate a scoring name."""
    if scoring not in SCORINGS:
        raise InvalidInputError(f"scoring must be one of {SCORINGS}, got {scoring!r}")
    return scoring


def _largest(values: np.ndarray, k: int, axis: int) -> np.ndarray:
    """The ``k`` largest values along ``axis`` (all of them when fewer), unordered."""
    n = values.shape[axis]
    if k >= n:
        return values
    part = np.partition(values, n - k, axis=axis)
    return part[:, n - k:] if axis == 1 else part[n - k:, :]


def top_k_margin(queries: np.ndarray, corpus: np.ndarray, top_k: int, k: int = MARGIN_K, chunk: int = 4096,
                 block: int = 131_072) -> tuple[np.ndarray, np.ndarray]:
    """Top-k corpus rows for each query by ratio margin (Artetxe & Schwenk 2019, bitext mining).

    ``margin(x, y) = cos(x, y) / ((mean of x's k nearest corpus rows + mean of y's k nearest
    queries) / 2)``: a pair scores high when it is closer than either side's usual neighbours,
    which discounts "hub" texts that are near everything. Both neighbourhoods are exact (two
    passes over the corpus in blocks). Vectors must be L2-normalised. Returns (indices, margin
    scores), best first; ties break by lower index.
    """
    kk = check_top_k(top_k, len(corpus), warn=False)
    n_q = len(queries)
    q_best = np.empty((n_q, 0), dtype=np.float32)
    c_nn = np.empty(len(corpus), dtype=np.float32)
    for cs in range(0, len(corpus), block):  # pass 1: each corpus row's k nearest queries, each query's k nearest rows
        c = np.asarray(corpus[cs : cs + block], dtype=np.float32)
        cols, rows = [], []
        for qs in range(0, n_q, chunk):
            sims = queries[qs : qs + chunk] @ c.T
            cols.append(_largest(sims, k, axis=0))
            rows.append(_largest(sims, k, axis=1))
        c_nn[cs : cs + len(c)] = _largest(np.concatenate(cols), k, axis=0).mean(0)
        q_best = _largest(np.concatenate([q_best, np.concatenate(rows)], axis=1), k, axis=1)
    q_nn = q_best.mean(1)
    idx_out = np.empty((n_q, kk), dtype=np.int64)
    score_out = np.empty((n_q, kk), dtype=np.float32)
    for qs in range(0, n_q, chunk):  # pass 2: margin scores, the best kk per query
        q = queries[qs : qs + chunk]
        best_i = np.empty((len(q), 0), dtype=np.int64)
        best_s = np.empty((len(q), 0), dtype=np.float32)
        for cs in range(0, len(corpus), block):
            sims = q @ np.asarray(corpus[cs : cs + block], dtype=np.float32).T
            sims = sims / np.maximum((q_nn[qs : qs + len(q), None] + c_nn[None, cs : cs + sims.shape[1]]) / 2, 1e-6)
            best_i, best_s = _merge_top_k(best_i, best_s, sims, cs, kk)
        idx_out[qs : qs + len(q)], score_out[qs : qs + len(q)] = best_i, best_s
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
        identity: what the encoder was (set by the router's ``build_index``); a router refuses
            an index whose identity differs from its own encoder's.
    """

    vectors: np.ndarray
    encoder: str
    texts: list[str] | None = None
    identity: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.vectors)

    def search(self, query_vectors: np.ndarray, top_k: int = 1, scoring: str = "cosine") -> tuple[np.ndarray, np.ndarray]:
        """Top-k (indices, scores) per query vector, by cosine or ratio margin (:func:`top_k_margin`)."""
        if query_vectors.ndim != 2 or query_vectors.shape[1] != self.vectors.shape[1]:
            raise InvalidInputError(
                f"query vectors of shape {query_vectors.shape} do not match index dim {self.vectors.shape[1]}"
            )
        if check_scoring(scoring) == "margin":
            return top_k_margin(query_vectors, self.vectors, top_k)
        return top_k_cosine(query_vectors, self.vectors, top_k)

    def checksum(self) -> str:
        """SHA-256 of the vectors (shape, dtype, bytes) and texts."""
        h = hashlib.sha256()
        vecs = np.ascontiguousarray(self.vectors, dtype=np.float32)
        h.update(json.dumps([list(vecs.shape), self.encoder, self.texts], ensure_ascii=False).encode())
        h.update(vecs.tobytes())
        return h.hexdigest()

    def save(self, path: str | Path) -> Path:
        """Save as one safetensors file (format version, checksum, encoder identity and texts in its metadata)."""
        path = Path(path)
        meta = {"format": INDEX_FORMAT, "format_version": INDEX_FORMAT_VERSION, "encoder": self.encoder,
                "texts": self.texts, "identity": self.identity, "sha256": self.checksum()}
        save_tensors(path, {"vectors": np.ascontiguousarray(self.vectors, dtype=np.float32)}, meta)
        return path

    @classmethod
    def load(cls, path: str | Path) -> VectorIndex:
        """Load an index saved by :meth:`save`.

        Raises:
            CheckpointError: not an index, another format version, or a checksum that does not
                match (the file was changed or damaged).
        """
        tensors, meta = load_tensors(path)
        if "vectors" not in tensors or meta.get("format") != INDEX_FORMAT:
            raise CheckpointError(f"{path} is not a sprachbund-router index")
        version = meta.get("format_version")
        if version != INDEX_FORMAT_VERSION:
            raise CheckpointError(f"{path} is index format {version!r}; this release reads {INDEX_FORMAT_VERSION}: "
                                  "rebuild it with router.build_index")
        texts = meta.get("texts")
        vectors = tensors["vectors"]
        if vectors.ndim != 2 or (texts is not None and len(texts) != len(vectors)):
            raise CheckpointError(f"{path} is corrupt: {None if texts is None else len(texts)} texts for vectors "
                                  f"of shape {vectors.shape}")
        index = cls(vectors=vectors, encoder=str(meta.get("encoder")), texts=texts, identity=dict(meta.get("identity") or {}))
        if index.checksum() != meta.get("sha256"):
            raise CheckpointError(f"{path} is damaged: its vectors or texts do not match the checksum stored with them")
        return index
