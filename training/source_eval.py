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

from training.loso import Data, hits_to_english

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


def served_hits(served: ServedVectors, scoring: str) -> dict[str, dict[str, np.ndarray]]:
    """Source -> language -> one bool per row of the split: is its English message ranked first among
    all of the source's English messages of that split (the protocol's candidates) by ``scoring``
    (``cosine`` / ``margin``)?"""
    out: dict[str, dict[str, np.ndarray]] = {}
    for source, per_split in served.data.rows.items():
        if per_split[served.split]:
            out[source] = hits_to_english(per_split[served.split], lambda texts, lang: served.get(texts, lang), scoring)
    return out


def compare(reference: Mapping[str, Mapping[str, np.ndarray]], other: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, Any]:
    """Per source: mean top-1 (%) over languages of both, the drop ``reference - other`` in points, its
    standard error, and the rows each gets right that the other misses; plus the worst source.

    Both are scored on the same rows, so the drop is a paired difference: per language the mean of
    d = hit_reference - hit_other over its n rows, averaged over the L languages, with standard
    error 100 / L * sqrt(sum over languages of var(d) / n). Where only a few rows change sides, a
    source's drop moves by several tenths of a point from the sample alone; the error says how much.
    """
    rows = {}
    for source in reference:
        ref, got = reference[source], other[source]
        langs = list(ref)
        diffs = [ref[lang].astype(float) - got[lang].astype(float) for lang in langs]
        a = 100 * float(np.mean([ref[lang].mean() for lang in langs]))
        b = 100 * float(np.mean([got[lang].mean() for lang in langs]))
        se = 100 / len(langs) * float(np.sqrt(sum(d.var() / len(d) for d in diffs)))
        rows[source] = {"reference": round(a, 2), "other": round(b, 2), "drop": round(a - b, 2),
                        "drop_se": round(se, 2), "rows": int(sum(len(d) for d in diffs)),
                        "lost": int(sum((d > 0).sum() for d in diffs)), "gained": int(sum((d < 0).sum() for d in diffs)),
                        "languages": len(langs)}
    worst = max(rows, key=lambda s: rows[s]["drop"]) if rows else None
    return {"sources": rows, "worst_source": worst, "max_drop": rows[worst]["drop"] if worst else 0.0,
            "mean_drop": round(float(np.mean([r["drop"] for r in rows.values()])), 2) if rows else 0.0}
