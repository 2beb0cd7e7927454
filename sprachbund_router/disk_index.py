"""A persistent corpus index in a directory: built in chunks, searched without loading it whole.

Layout (``sbr index build`` writes it; ``sbr retrieve --index DIR`` searches it)::

    index.json      format, version, encoder name and identity, size, checksums, search backend
    vectors.npy     float32 [n, dim], L2-normalised (memory-mapped at search time)
    texts.jsonl     one JSON string per corpus text (optional)
    ann.faiss       a FAISS IVF index over the vectors (corpora of at least ``ANN_MIN_SIZE``)

Everything is written into a partial folder that is moved into place only when complete, and
``index.json`` carries SHA-256 checksums of the other files: a changed or truncated file, or an
index made by another encoder (see :meth:`SprachbundRouter.check_index`), is refused.

Search is exact below ``ANN_MIN_SIZE`` vectors (blocked matrix products, bounded memory) and
approximate above it: FAISS ``IndexIVFFlat`` on inner product (cosine on unit vectors), whose
recall against exact search is measured by ``python -m benchmarks.ann``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sprachbund_router.checkpoint import read_json_object
from sprachbund_router.errors import CheckpointError, InvalidInputError
from sprachbund_router.index import MARGIN_K, check_scoring, check_top_k, top_k_cosine, top_k_margin
from sprachbund_router.npy import NpyWriter
from sprachbund_router.staging import StagedDirectory

logger = logging.getLogger(__name__)

DISK_INDEX_FORMAT = "sprachbund-router-index-dir"
DISK_INDEX_VERSION = 1
META_FILE, VECTORS_FILE, TEXTS_FILE, ANN_FILE = "index.json", "vectors.npy", "texts.jsonl", "ann.faiss"
#: Corpora at least this large get an approximate (FAISS IVF) index.
ANN_MIN_SIZE = 200_000
#: Fewest FAISS lists searched per query by default (all of them when the index has fewer): on a
#: small index, 1 list of 7 recalled 0.69 at 5.
NPROBE_FLOOR = 8
#: Candidates per query that an approximate margin search takes from FAISS (times the k asked).
MARGIN_SHORTLIST = 4
#: How an index searches: exactly, or with its FAISS IVF index.
SEARCH_KINDS = ("exact", "faiss-ivf")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


class DiskIndexWriter:
    """Write an index directory chunk by chunk; :meth:`finish` checksums it and moves it into place."""

    def __init__(self, directory: str | Path, keep_texts: bool = True) -> None:
        self._staged = StagedDirectory(directory, "index")
        self.directory, self.tmp = self._staged.target, self._staged.path
        self._vectors = NpyWriter(self.tmp / VECTORS_FILE)
        self._texts = (self.tmp / TEXTS_FILE).open("w", encoding="utf-8") if keep_texts else None

    @property
    def rows(self) -> int:
        """Vectors written so far."""
        return self._vectors.rows

    def append(self, vectors: np.ndarray, texts: Sequence[str]) -> None:
        """Add a chunk of (unit) vectors and their texts."""
        if len(vectors) != len(texts):
            raise ValueError(f"{len(vectors)} vectors for {len(texts)} texts")
        self._vectors.append(np.asarray(vectors, dtype=np.float32))
        if self._texts is not None:
            self._texts.writelines(json.dumps(t, ensure_ascii=False) + "\n" for t in texts)

    def abort(self) -> None:
        """Remove the partial folder (also when closing its files fails, e.g. on a full disk)."""
        try:
            with contextlib.suppress(OSError):
                self._vectors.close()
            if self._texts is not None:
                with contextlib.suppress(OSError):
                    self._texts.close()
        finally:
            self._staged.abort()

    def finish(self, encoder: str, identity: dict[str, Any], ann: str = "auto", nlist: int | None = None) -> Path:
        """Write the ANN index (``ann``: ``auto``, ``faiss`` or ``exact``), the metadata, and move into place."""
        self._vectors.close()
        if self._texts is not None:
            self._texts.close()
        try:
            n = self._vectors.rows
            if n == 0:
                raise InvalidInputError("the corpus is empty")
            use_ann = ann == "faiss" or (ann == "auto" and n >= ANN_MIN_SIZE)
            meta: dict[str, Any] = {
                "format": DISK_INDEX_FORMAT, "format_version": DISK_INDEX_VERSION, "encoder": encoder,
                "identity": identity, "size": n, "dim": self._vectors.dim, "search": "exact",
                "sha256": {VECTORS_FILE: _sha256(self.tmp / VECTORS_FILE)},
            }
            if self._texts is not None:
                meta["sha256"][TEXTS_FILE] = _sha256(self.tmp / TEXTS_FILE)
            if use_ann:
                meta["search"] = "faiss-ivf"
                meta["ann"] = build_faiss_ivf(np.load(self.tmp / VECTORS_FILE, mmap_mode="r"), self.tmp / ANN_FILE, nlist)
                meta["sha256"][ANN_FILE] = _sha256(self.tmp / ANN_FILE)
            (self.tmp / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
            return self._staged.commit()
        except BaseException:
            self._staged.abort()
            raise


def build_faiss_ivf(vectors: np.ndarray, path: Path, nlist: int | None = None, train_size: int = 100_000) -> dict[str, Any]:
    """Train and fill a FAISS ``IndexIVFFlat`` (inner product) and save it; returns its settings."""
    try:
        import faiss
    except ImportError as err:
        raise CheckpointError("an approximate index needs faiss: pip install faiss-cpu (or build with --ann exact)") from err
    n, dim = vectors.shape
    nlist = nlist or int(max(1, min(65_536, 4 * np.sqrt(n), n // 39)))  # FAISS wants >= 39 training points a list
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(n, size=min(n, max(train_size, 40 * nlist)), replace=False))
    index.train(np.ascontiguousarray(vectors[sample], dtype=np.float32))
    for start in range(0, n, 262_144):
        index.add(np.ascontiguousarray(vectors[start : start + 262_144], dtype=np.float32))
    nprobe = min(nlist, max(NPROBE_FLOOR, nlist // 16))  # a few lists of a small index recall poorly
    index.nprobe = nprobe  # stored in the file: plain `faiss.read_index` users search as the router does
    faiss.write_index(index, str(path))
    return {"library": "faiss", "faiss_version": faiss.__version__, "type": "IndexIVFFlat", "metric": "inner_product",
            "nlist": nlist, "nprobe": nprobe}


class DiskIndex:
    """An index directory opened for search (vectors memory-mapped, checksums verified).

    Attributes:
        encoder / identity: the encoder that made the vectors (checked by the router).
        texts: the corpus texts, or None when the index was built without them.
    """

    def __init__(self, directory: Path, meta: dict[str, Any], vectors: np.ndarray, texts: list[str] | None,
                 ann: Any = None) -> None:
        self.directory, self.meta, self.vectors, self.texts, self.ann = directory, meta, vectors, texts, ann
        self.encoder: str = meta["encoder"]
        self.identity: dict[str, Any] = dict(meta.get("identity") or {})

    def __len__(self) -> int:
        return len(self.vectors)

    @classmethod
    def load(cls, directory: str | Path, verify: bool = True, nprobe: int | None = None) -> DiskIndex:
        """Open an index directory.

        Raises:
            CheckpointError: not an index directory, another format version, a missing file, or a
                file whose checksum does not match (changed or damaged).
        """
        directory = Path(directory)
        meta_file = directory / META_FILE
        if not meta_file.is_file():
            raise CheckpointError(f"{directory} is not an index directory (no {META_FILE}; an interrupted build leaves none)")
        meta = read_json_object(meta_file)
        if meta.get("format") != DISK_INDEX_FORMAT:
            raise CheckpointError(f"{directory} is not a sprachbund-router index directory")
        if meta.get("format_version") != DISK_INDEX_VERSION:
            raise CheckpointError(f"{directory} is index format {meta.get('format_version')!r}; this release reads "
                                  f"{DISK_INDEX_VERSION}: rebuild it with `sbr index build`")
        missing = [k for k in ("encoder", "size", "dim", "sha256") if k not in meta]
        if missing:
            raise CheckpointError(f"{meta_file} is damaged: it lacks {missing} (checksums and the encoder's identity "
                                  "are required); rebuild the index with `sbr index build`")
        if not isinstance(meta["encoder"], str) or not isinstance(meta.get("identity") or {}, dict):
            raise CheckpointError(f"{meta_file} is damaged: 'encoder' must be an encoder name and 'identity' an object; "
                                  "rebuild the index")
        if meta.get("search", "exact") not in SEARCH_KINDS:
            raise CheckpointError(f"{meta_file} is damaged: search {meta.get('search')!r} is not one of {SEARCH_KINDS}")
        if not all(isinstance(meta[k], int) and not isinstance(meta[k], bool) and meta[k] >= 0 for k in ("size", "dim")):
            raise CheckpointError(f"{meta_file} is damaged: 'size' and 'dim' must be non-negative integers")
        sums = meta["sha256"]
        if not isinstance(sums, dict) or VECTORS_FILE not in sums:
            raise CheckpointError(f"{meta_file} is damaged: no checksum of {VECTORS_FILE}; rebuild the index")
        if (directory / TEXTS_FILE).exists() and TEXTS_FILE not in sums:
            raise CheckpointError(f"{meta_file} is damaged: {TEXTS_FILE} is present but has no checksum; rebuild the index")
        if meta.get("search") == "faiss-ivf" and ANN_FILE not in sums:
            raise CheckpointError(f"{meta_file} says the search is faiss-ivf but records no {ANN_FILE}; rebuild the index")
        for name in sums:
            if name not in (VECTORS_FILE, TEXTS_FILE, ANN_FILE):
                raise CheckpointError(f"{meta_file} names an unexpected file {name!r}")
            if not (directory / name).is_file():
                raise CheckpointError(f"{directory / name} is missing")
            if verify and _sha256(directory / name) != sums[name]:
                raise CheckpointError(f"{directory / name} is damaged: it does not match the checksum in {META_FILE}")
        try:
            vectors = np.load(directory / VECTORS_FILE, mmap_mode="r")
        except (OSError, ValueError) as err:
            raise CheckpointError(f"{directory / VECTORS_FILE} is corrupt: {err}") from err
        if vectors.ndim != 2 or len(vectors) != meta.get("size") or vectors.shape[1] != meta.get("dim"):
            raise CheckpointError(f"{directory / VECTORS_FILE} has shape {vectors.shape}, {META_FILE} says "
                                  f"({meta.get('size')}, {meta.get('dim')})")
        texts = None
        if TEXTS_FILE in sums:
            try:
                with (directory / TEXTS_FILE).open(encoding="utf-8") as f:
                    texts = [json.loads(line) for line in f]
            except (UnicodeDecodeError, ValueError) as err:
                raise CheckpointError(f"{directory / TEXTS_FILE} is corrupt (one JSON string per line expected): "
                                      f"{str(err)[:200]}") from None
            if not all(isinstance(t, str) for t in texts):
                raise CheckpointError(f"{directory / TEXTS_FILE} is corrupt: every line must be a JSON string")
            if len(texts) != len(vectors):
                raise CheckpointError(f"{directory / TEXTS_FILE} has {len(texts)} texts for {len(vectors)} vectors")
        ann = None
        if meta.get("search") == "faiss-ivf":
            try:
                import faiss
            except ImportError as err:
                raise CheckpointError("this index is approximate (FAISS): pip install faiss-cpu") from err
            try:
                ann = faiss.read_index(str(directory / ANN_FILE))
                ann.nprobe = int(nprobe or (meta.get("ann") or {}).get("nprobe") or 1)
            except (RuntimeError, TypeError, ValueError) as err:
                raise CheckpointError(f"{directory / ANN_FILE} is not a readable FAISS index: {str(err)[:200]}") from err
        return cls(directory, meta, vectors, texts, ann)

    def search(self, query_vectors: np.ndarray, top_k: int = 1, scoring: str = "cosine") -> tuple[np.ndarray, np.ndarray]:
        """Top-k (indices, scores) per query vector: FAISS when the index has it, else exact.
        ``scoring="margin"`` ranks FAISS's shortlists by ratio margin when the index has FAISS
        (:meth:`_margin_from_ann`), else it is exact (two passes over the vectors, :func:`top_k_margin`)."""
        if query_vectors.ndim != 2 or query_vectors.shape[1] != self.vectors.shape[1]:
            raise InvalidInputError(f"query vectors of shape {query_vectors.shape} do not match index dim {self.vectors.shape[1]}")
        k = check_top_k(top_k, len(self), warn=False)
        if check_scoring(scoring) == "margin":
            if self.ann is not None:
                return self._margin_from_ann(np.asarray(query_vectors, dtype=np.float32), k)
            return top_k_margin(np.asarray(query_vectors, dtype=np.float32), self.vectors, k, chunk=256)
        if self.ann is None:
            return top_k_cosine(np.asarray(query_vectors, dtype=np.float32), self.vectors, k, chunk=256)
        scores, idx = self.ann.search(np.ascontiguousarray(query_vectors, dtype=np.float32), k)
        return idx.astype(np.int64), scores.astype(np.float32)

    def _margin_from_ann(self, queries: np.ndarray, top_k: int, k: int = MARGIN_K) -> tuple[np.ndarray, np.ndarray]:
        """Ratio margin (:func:`~sprachbund_router.index.top_k_margin`) on FAISS's shortlists: each
        query's candidates and its own k nearest rows come from the ANN search (with ``nprobe``);
        each candidate's k nearest queries are exact (queries x candidates)."""
        want = min(len(self), max(MARGIN_SHORTLIST * top_k, k, top_k))
        sims, idx = self.ann.search(np.ascontiguousarray(queries), want)
        found = idx >= 0  # FAISS pads with -1 when the probed lists hold fewer rows
        q_nn = np.array([row[ok][:k].mean() if ok.any() else 0.0 for row, ok in zip(sims, found)], dtype=np.float32)
        cand = np.unique(idx[found])
        c_nn = np.zeros(len(self), dtype=np.float32)
        if len(cand):
            c_sims = queries @ np.asarray(self.vectors[cand], dtype=np.float32).T  # [n_q, candidates]
            kq = min(k, len(queries))
            c_nn[cand] = -np.sort(-c_sims, axis=0)[:kq].mean(0)
        out_i = np.full((len(queries), top_k), -1, dtype=np.int64)
        out_s = np.full((len(queries), top_k), -np.inf, dtype=np.float32)
        for r in range(len(queries)):
            rows, cos = idx[r][found[r]], sims[r][found[r]]
            margin = cos / np.maximum((q_nn[r] + c_nn[rows]) / 2, 1e-6)
            order = np.lexsort((rows, -margin))[:top_k]  # best first, ties by lower index
            out_i[r, :len(order)], out_s[r, :len(order)] = rows[order], margin[order]
        return out_i, out_s
