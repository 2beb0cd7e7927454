"""The identifier protocol and what one guess says."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Identifier(Protocol):
    """What the router needs of a language identifier (langid, fastText, the router's n-gram model,
    or a mixture of them: :func:`make_identifier`)."""

    #: Name in the router config (``language_id.backend``).
    name: str
    #: The router languages it can name, in the columns' order of :meth:`distribution`.
    languages: list[str]

    def distribution(self, texts: Sequence[str]) -> np.ndarray:
        """Posterior ``[len(texts), len(languages)]`` over :attr:`languages` (rows sum to 1)."""
        ...


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




def _normalise_rows(p: np.ndarray) -> np.ndarray:
    sums = p.sum(axis=1, keepdims=True)
    empty = sums[:, 0] <= 0
    p[empty] = 1.0
    sums[empty] = p.shape[1]
    return p / sums
