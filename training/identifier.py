"""The router's own language identifier: character n-gram naive Bayes over the router's languages.

langid (97 languages) and fastText lid.176 (176) are general-purpose and leave out some router
languages (Hausa and Oromo are in neither; langid also lacks Frisian, Somali, Uzbek...). This
stage trains a multinomial naive Bayes over character 1-4-grams (:func:`sprachbund_router.
language_id.ngram_codes`) on text of every router language that no dev, test or out-of-domain
split holds:

- the Firefox **train** split (strings left in English removed: :func:`training.calibration.left_in_english`);
- the language's monolingual UDHR text (split into sentences), which gives languages without
  Firefox strings a model and the others text outside the software domain;
- for English, the English side of the train split.

The model is the n-grams seen at least ``min_count`` times (the ``max_features`` most frequent)
with Laplace-smoothed log-probabilities per language, stored as float16 in
``language_id/ngram.safetensors``, plus a temperature and a length power fitted on the dev split
(:func:`fit_scaling`: naive Bayes is over-confident). Training takes seconds. Its routing is measured like the other
backends on the dev split (calibration) and the test split and the out-of-domain VLC strings
(``sbr eval langid``).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sprachbund_router.language_id import NGRAM_FILE, NGRAM_ORDERS, NgramIdentifier, ngram_codes
from training.corpus import read_mono, read_split_rows

logger = logging.getLogger(__name__)

#: Bump when the identifier's data or model changes (the pipeline's stage cache is keyed by it).
IDENTIFIER_VERSION = 2
_SENTENCE_END = re.compile(r"(?<=[.!?։।።。！？])\s+")


def training_texts(corpus_dir: Path, languages: Sequence[str], max_interface: int = 1500, max_mono: int = 500
                   ) -> dict[str, list[str]]:
    """Per language: up to ``max_interface`` Firefox train strings and ``max_mono`` UDHR sentences."""
    from training.calibration import english_vocabulary, left_in_english

    vocabulary = english_vocabulary(Path(corpus_dir))
    english: dict[str, None] = {}
    out: dict[str, list[str]] = {}
    for lang in languages:
        rows = read_split_rows(corpus_dir, lang, "train")
        for _, _, en, _ in rows:
            english.setdefault(en)
        texts = [x for _, x, en, _ in rows if not left_in_english(x, en, vocabulary)][:max_interface]
        mono = [s for p in read_mono(corpus_dir, lang) for s in _SENTENCE_END.split(p) if s.strip()][:max_mono]
        out[lang] = texts + mono
    if "en" in out:
        out["en"] = list(english)[:max_interface] + out["en"]
    return out


LENGTH_POWERS = (0.0, 0.25, 0.5, 0.75, 1.0)
TEMPERATURES = tuple(float(t) for t in np.exp(np.linspace(np.log(0.05), np.log(20.0), 40)))


def fit_scaling(identifier: NgramIdentifier, dev: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Temperature and length power minimising the negative log-likelihood of the right language
    on held-out dev texts ((language, text) pairs): naive Bayes is over-confident, the more so the
    longer the text, and the mixtures and thresholds downstream need probabilities that mean what
    they say. A grid: length powers 0-1, 40 temperatures from 0.05 to 20 (log-spaced)."""
    rows = [(identifier.languages.index(lang), text) for lang, text in dev if lang in identifier.languages]
    logp, n = identifier.log_likelihoods([t for _, t in rows])
    y = np.array([i for i, _ in rows])
    best: tuple[float, float, float] | None = None
    for power in LENGTH_POWERS:
        scaled = logp / np.maximum(n, 1)[:, None] ** power
        for temperature in TEMPERATURES:
            z = scaled / temperature
            z -= z.max(axis=1, keepdims=True)
            nll = float(-(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(axis=1))).mean())
            if best is None or nll < best[0]:
                best = (nll, power, temperature)
    assert best is not None
    raw = logp - logp.max(axis=1, keepdims=True)
    nll_raw = float(-(raw[np.arange(len(y)), y] - np.log(np.exp(raw).sum(axis=1))).mean())
    logger.info("n-gram identifier: length power %.2f, temperature %.2f (dev NLL %.3f, uncalibrated %.3f)",
                best[1], best[2], best[0], nll_raw)
    return {"temperature": round(best[2], 4), "length_power": best[1], "dev_nll": round(best[0], 4),
            "dev_nll_uncalibrated": round(nll_raw, 4), "dev_texts": len(rows)}


def train_ngram(corpus_dir: Path, languages: Sequence[str], out_dir: Path, min_count: int = 2,
                max_features: int = 100_000, alpha: float = 0.01, texts: dict[str, list[str]] | None = None
                ) -> dict[str, Any]:
    """Train the n-gram identifier on the router's ``languages`` and write it to ``out_dir / NGRAM_FILE``.

    ``texts``: training text per language (default: :func:`training_texts` of the corpus).

    Returns:
        A report: texts per language, features kept, seconds, languages without text.
    """
    from sprachbund_router.tensors import save_tensors

    started = time.perf_counter()
    texts = training_texts(corpus_dir, languages) if texts is None else texts
    langs = [lang for lang in sorted(texts) if texts[lang]]
    empty = sorted(set(languages) - set(langs))
    if empty:
        logger.warning("n-gram identifier: no training text for %s (it cannot name them)", empty)
    if not langs:
        raise ValueError("n-gram identifier: none of the router languages has training text")
    flat = [t for lang in langs for t in texts[lang]]
    label = np.repeat(np.arange(len(langs)), [len(texts[lang]) for lang in langs])
    rows, codes = ngram_codes(flat)
    keys, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
    keep = np.flatnonzero(counts >= min_count)
    keep = keep[np.argsort(-counts[keep], kind="stable")[:max_features]]
    keep.sort()
    new_index = np.full(len(keys), -1, dtype=np.int64)
    new_index[keep] = np.arange(len(keep))
    feat = new_index[inverse]
    ok = feat >= 0
    table = np.bincount(feat[ok] * len(langs) + label[rows[ok]], minlength=len(keep) * len(langs))
    table = table.reshape(len(keep), len(langs)).astype(np.float64)
    log_probs = np.log(table + alpha) - np.log(table.sum(axis=0, keepdims=True) + alpha * len(keep))
    path = out_dir / NGRAM_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {"codes": keys[keep], "log_probs": log_probs.astype(np.float16)}
    meta = {"languages": langs, "orders": list(NGRAM_ORDERS), "alpha": alpha, "min_count": min_count,
            "format": "sprachbund-router n-gram identifier v1"}
    save_tensors(path, tensors, meta)
    from training.calibration import routing_set

    dev = [(lang, text) for lang, _, text in routing_set(corpus_dir, langs, "dev")]
    scaling = fit_scaling(NgramIdentifier(langs, out_dir), dev) if dev else {"temperature": 1.0, "length_power": 0.0}
    save_tensors(path, tensors, {**meta, **{k: scaling[k] for k in ("temperature", "length_power")}})
    report = {"languages": len(langs), "texts": {lang: len(texts[lang]) for lang in langs}, "features": len(keep),
              "n_grams_seen": len(keys), "no_text": empty, "seconds": round(time.perf_counter() - started, 1),
              "bytes": path.stat().st_size, "scaling": scaling,
              "data": "Firefox train split (strings left in English removed) + UDHR sentences; English: the train "
                      "split's English side"}
    logger.info("n-gram identifier: %d languages, %d features, %.1f MB, %.0f s", len(langs), len(keep),
                report["bytes"] / 1e6, report["seconds"])
    return report
