"""Build a persistent index from a corpus too big to hold: two streamed passes over its chunks.

Pass 1 routes every text (language identification only, cheap) to find the corpus's
sprachbund: the one holding at least 90% of the texts, whose encoder then embeds the whole
corpus, else the shared encoder (the rule of :meth:`SprachbundRouter.build_index`). Pass 2
encodes chunk by chunk into a :class:`~sprachbund_router.disk_index.DiskIndexWriter`, so memory
stays bounded by the chunk size.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from sprachbund_router.disk_index import DiskIndexWriter
from sprachbund_router.inputs import validate_langs
from sprachbund_router.retrieval import CORPUS_MAJORITY
from sprachbund_router.router import SprachbundRouter

logger = logging.getLogger(__name__)


def build_disk_index(
    router: SprachbundRouter,
    chunks: Callable[[], Iterable[list[str]]],
    out_dir: str | Path,
    lang: str | None = None,
    batch_size: int = 32,
    ann: str = "auto",
    keep_texts: bool = True,
    on_chunk: Callable[[int], None] | None = None,
) -> Path:
    """Encode a corpus given as re-iterable chunks of texts into an index directory.

    Args:
        router: the router whose encoders embed the corpus.
        chunks: called twice; each call yields the corpus as lists of texts, in the same order.
        out_dir: the index directory to create (must not exist or be empty).
        lang: language of every text (skips identification).
        batch_size: texts per forward pass.
        ann: ``auto`` (FAISS IVF from 200,000 texts), ``faiss`` or ``exact``.
        keep_texts: store the texts beside the vectors.
        on_chunk: called with each chunk's size during encoding (progress).
    """
    counts: Counter[str | None] = Counter()
    for texts in chunks():
        counts.update(r.sprachbund for r in router.route(texts, lang=lang))
    total = sum(counts.values())
    group, n = counts.most_common(1)[0]
    encoder = router.config.canonical_encoder(router.config.sprachbund_encoders[group]
                                              if group is not None and n >= CORPUS_MAJORITY * total else router.config.shared_encoder)
    logger.info("indexing %d texts with encoder %s (%s)", total, encoder, dict(counts))
    writer = DiskIndexWriter(out_dir, keep_texts=keep_texts)
    try:
        for texts in chunks():
            routes = router._route(texts, validate_langs(lang, len(texts)))
            writer.append(router._encode_routed(texts, [encoder] * len(texts), routes, batch_size, True), texts)
            if on_chunk is not None:
                on_chunk(len(texts))
        return writer.finish(encoder, router.encoder_identity(encoder), ann)
    except BaseException:
        writer.abort()
        raise
