"""Several identifiers combined, and the one place a backend name becomes an identifier."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sprachbund_router.errors import CheckpointError
from sprachbund_router.language_id.base import Identifier
from sprachbund_router.language_id.fasttext_backend import FastTextIdentifier
from sprachbund_router.language_id.langid_backend import LangidIdentifier
from sprachbund_router.language_id.ngram import NgramIdentifier


class MixtureIdentifier:
    """Several identifiers combined: the mean of their distributions over the union of their
    languages. A language an identifier cannot name gets the uniform share 1/n from it and the
    identifier's own distribution is scaled to the rest, so every part's row sums to 1. On the
    dev split a mean was better calibrated than the product, which made both models' errors
    more confident."""

    def __init__(self, parts: Sequence[Identifier], name: str) -> None:
        self.parts = list(parts)
        self.name = name
        self.languages = sorted({lang for p in self.parts for lang in p.languages})
        col = {lang: i for i, lang in enumerate(self.languages)}
        self._cols = [np.array([col[lang] for lang in p.languages]) for p in self.parts]

    def distribution(self, texts: Sequence[str]) -> np.ndarray:
        """Mean of the parts' distributions ``[n, len(languages)]`` (rows sum to 1)."""
        n = len(self.languages)
        total = np.zeros((len(texts), n))
        for part, cols in zip(self.parts, self._cols):
            missing = n - len(cols)
            if missing:
                total += 1.0 / n
                total[:, cols] += part.distribution(texts) * (1.0 - missing / n) - 1.0 / n
            else:
                total[:, cols] += part.distribution(texts)
        return total / len(self.parts)


#: Identifiers a rule can name; ``a+b`` (parts in alphabetical order) is the mean of the parts.
PARTS = ("fasttext", "langid", "ngram")


def make_identifier(backend: str, languages: Sequence[str], directory: str | Path | None = None) -> Identifier:
    """Build the identifier named in the router config: ``langid``, ``fasttext``, ``ngram`` (the
    router's own, read from ``directory``) or a mean of several, ``+``-joined in alphabetical
    order (``fasttext+langid``, ``fasttext+langid+ngram``...).

    Raises:
        ValueError: an unknown backend name.
        CheckpointError: the backend's model file is missing (or ``ngram`` without a directory).
    """
    parts = check_backend(backend)
    built: list[Identifier] = []
    for part in parts:
        if part == "langid":
            built.append(LangidIdentifier(languages))
        elif part == "fasttext":
            built.append(FastTextIdentifier(languages))
        else:
            if directory is None:
                raise CheckpointError("language-ID backend 'ngram' is read from a router directory; none was given")
            built.append(NgramIdentifier(languages, directory))
    return built[0] if len(built) == 1 else MixtureIdentifier(built, backend)


def check_backend(backend: str) -> list[str]:
    """The parts of a backend name, or a ValueError naming what is wrong with it."""
    parts = backend.split("+") if isinstance(backend, str) else []
    if not parts or any(p not in PARTS for p in parts) or parts != sorted(set(parts)):
        raise ValueError(f"unknown language-ID backend {backend!r}: use one of {', '.join(PARTS)} or several joined by '+' "
                         f"in alphabetical order (e.g. {'+'.join(PARTS)})")
    return parts


#: The identifiers the calibration compares (``training/calibration.py``); any valid combination loads.
COMPARED_IDENTIFIERS = ("langid", "fasttext", "ngram", "fasttext+langid", "langid+ngram", "fasttext+ngram", "fasttext+langid+ngram")
