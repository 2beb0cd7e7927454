"""What a router's served vectors retrieve on the held-out sources (``training.held_out_sources``).

The leave-one-source-out protocol (``training.loso``) scores candidate settings from cached
layer vectors; this module scores a built router as users run it: ``router.encode(texts,
lang=...)`` on both sides (the foreign rows with their language, the English candidates as
``en``), ranked with the router's own ``retrieval_scoring`` among all of a source's English
messages of the split, exactly as the protocol ranks them. It is used where one router is
compared with another running the same space, e.g. the int8 ONNX backend against PyTorch:
the export check scores the dev halves (a choice), the benchmark the test halves (a report).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from training.loso import Data, macro, top1_to_english

logger = logging.getLogger(__name__)


class ServedVectors:
    """The router's served vectors of every text of ``split`` (both sides), encoded once per language
    (rows under the language ``None``, or one the router does not know, are identified by it)."""

    def __init__(self, router: Any, data: Data, split: str, batch_size: int = 64) -> None:
        self.data, self.split = data, split
        by_lang: dict[str | None, set[str]] = {}
        for per_split in data.rows.values():
            for lang, pairs in per_split[split].items():
                by_lang.setdefault(lang, set()).update(x for x, _ in pairs)
                by_lang.setdefault("en", set()).update(e for _, e in pairs)
        self.vectors: dict[str | None, dict[str, np.ndarray]] = {}
        known = set(router.config.languages)
        for lang in sorted(by_lang, key=str):
            texts = sorted(by_lang[lang])
            given = lang if lang in known else None  # rows of unknown language (None): the router identifies them
            v = np.asarray(router.encode(texts, lang=given, batch_size=batch_size, show_progress_bar=False), np.float32)
            self.vectors[lang] = dict(zip(texts, v))
        logger.info("encoded %d texts of %d languages (%s)", sum(map(len, by_lang.values())), len(by_lang), split)

    def get(self, texts: Sequence[str], lang: str | None) -> np.ndarray:
        """Stacked vectors of ``texts`` of language ``lang``."""
        return np.stack([self.vectors[lang][t] for t in texts])


def served_top1(served: ServedVectors, scoring: str) -> dict[str, dict[str, float]]:
    """Source -> language -> top-1 of the split's rows among all of the source's English messages
    of that split (the protocol's candidates), ranked by ``scoring`` (``cosine`` / ``margin``)."""
    out: dict[str, dict[str, float]] = {}
    for source, per_split in served.data.rows.items():
        if per_split[served.split]:
            out[source] = top1_to_english(per_split[served.split], lambda texts, lang: served.get(texts, lang), scoring)
    return out

def compare(reference: Mapping[str, Mapping[str, float]], other: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """Per-source mean top-1 (%) of both and the drop ``reference - other`` in points, plus the worst."""
    rows = {}
    for source in reference:
        a, b = 100 * macro(reference[source]), 100 * macro(other[source])
        rows[source] = {"reference": round(a, 2), "other": round(b, 2), "drop": round(a - b, 2),
                        "languages": len(reference[source])}
    worst = max(rows, key=lambda s: rows[s]["drop"]) if rows else None
    return {"sources": rows, "worst_source": worst, "max_drop": rows[worst]["drop"] if worst else 0.0,
            "mean_drop": round(float(np.mean([r["drop"] for r in rows.values()])), 2) if rows else 0.0}
