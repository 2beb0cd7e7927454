"""Language identification with a bundled model (nothing is downloaded at run time).

The default backend is ``langid`` (Lui & Baldwin 2012; 97 languages, ISO 639-1 codes, its
naive-Bayes model ships inside the PyPI package). Identification is restricted to the
router's languages, so a text is never assigned to a language the router cannot route, and
a whole batch is scored with one matrix product.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: langid codes that differ from the codes the router uses.
LANGID_ALIASES = {"no": "nb"}


@dataclass(frozen=True)
class LanguageGuess:
    """The identified language of one text.

    Attributes:
        language: ISO code, or None when the text gives no evidence (no letters).
        confidence: posterior probability of ``language`` among the candidate languages
            (1.0 when the caller passed ``lang=``).
        reason: why the guess is not trustworthy (``None`` when it is).
    """

    language: str | None
    confidence: float
    reason: str | None = None


def has_letters(text: str) -> bool:
    """True when ``text`` holds at least one alphabetic character (emoji and digits do not count)."""
    return any(ch.isalpha() for ch in text)


@lru_cache(maxsize=1)
def _langid_model() -> Any:
    """langid's full model, unpacked once per process (it is only read afterwards)."""
    from langid.langid import LanguageIdentifier, model

    return LanguageIdentifier.from_modelstring(model, norm_probs=True)


class LangidIdentifier:
    """langid.py restricted to a set of languages.

    Args:
        languages: the languages to choose from (router codes). Those langid does not know
            are left out of identification and logged; they can still be given with ``lang=``.
    """

    name = "langid"

    def __init__(self, languages: Sequence[str]) -> None:
        self._ident = _langid_model()
        supported = set(self._ident.nb_classes)
        reverse = {v: k for k, v in LANGID_ALIASES.items()}
        wanted = {reverse.get(lang, lang) for lang in languages}
        usable = sorted(wanted & supported)
        missing = sorted(wanted - supported)
        if not usable:
            raise ValueError(f"langid knows none of the router languages {sorted(languages)}")
        if missing:
            logger.info("langid cannot identify %d router languages (pass lang= for them): %s", len(missing), missing)
        mask = np.array([c in usable for c in self._ident.nb_classes])
        self._ptc = self._ident.nb_ptc[:, mask]
        self._pc = self._ident.nb_pc[mask]
        self.languages = [LANGID_ALIASES.get(c, c) for c, m in zip(self._ident.nb_classes, mask) if m]
        self.unsupported = [LANGID_ALIASES.get(c, c) for c in missing]

    def predict(self, texts: Sequence[str], chunk: int = 256) -> tuple[list[str], np.ndarray]:
        """Most likely language and its probability for each text (one product per ``chunk`` texts,
        so memory stays bounded: langid's feature vector is dense)."""
        best_all = np.empty(len(texts), dtype=np.int64)
        conf_all = np.empty(len(texts), dtype=np.float64)
        for start in range(0, len(texts), chunk):
            part = texts[start : start + chunk]
            fv = np.stack([self._ident.instance2fv(t) for t in part]).astype(np.float64)
            logp = fv @ self._ptc + self._pc
            logp -= logp.max(axis=1, keepdims=True)
            probs = np.exp(logp)
            probs /= probs.sum(axis=1, keepdims=True)
            best = probs.argmax(axis=1)
            best_all[start : start + len(part)] = best
            conf_all[start : start + len(part)] = probs[np.arange(len(part)), best]
        return [self.languages[i] for i in best_all], conf_all

    def identify(self, texts: Sequence[str], min_confidence: float = 0.0) -> list[LanguageGuess]:
        """Identify each text; texts without letters get ``language=None``."""
        guesses: list[LanguageGuess | None] = [None] * len(texts)
        scored = []
        for i, t in enumerate(texts):
            if has_letters(t):
                scored.append(i)
            else:
                guesses[i] = LanguageGuess(None, 0.0, "no letters to identify a language from")
        if scored:
            langs, conf = self.predict([texts[i] for i in scored])
            for i, lang, c in zip(scored, langs, conf.tolist()):
                reason = None if c >= min_confidence else f"low confidence {c:.2f} < {min_confidence:.2f}"
                guesses[i] = LanguageGuess(lang, float(c), reason)
        return [g for g in guesses if g is not None]


def make_identifier(backend: str, languages: Sequence[str]) -> LangidIdentifier:
    """Build the identifier named in the router config."""
    if backend == "langid":
        return LangidIdentifier(languages)
    raise ValueError(f"unknown language-ID backend {backend!r} (available: 'langid')")
