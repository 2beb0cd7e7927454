"""What the router returns: routes, retrieval results, prepared corpora, classifications (a leaf
of the router: the router and its retrieval part both build these)."""

from __future__ import annotations

from dataclasses import dataclass

from sprachbund_router.index import VectorIndex

__all__ = ["Classification", "PreparedCorpus", "RetrievalResult", "Route"]


@dataclass(frozen=True)
class Route:
    """Where one text goes.

    Attributes:
        language: identified (or given) language, None when unknown.
        sprachbund: its sprachbund, None when the text fell back.
        encoder: name of the encoder that will embed it.
        confidence: probability of the routing decision: of the sprachbund (sum over its
            languages) or of the language, as ``language_id.level`` says (1.0 for ``lang=``).
        fallback: True when the text went to the fallback encoder; ``reason`` says why.
        reason: why the text fell back, or None.
    """

    language: str | None
    sprachbund: str | None
    encoder: str
    confidence: float
    fallback: bool = False
    reason: str | None = None


@dataclass(frozen=True)
class RetrievalResult:
    """Ranked corpus hits for one query.

    Attributes:
        indices: corpus indices, best first.
        scores: cosine similarities, aligned with ``indices``.
        encoder: the encoder that embedded both the query and the corpus.
        route: how the query was routed.
    """

    indices: list[int]
    scores: list[float]
    encoder: str
    route: Route


@dataclass
class PreparedCorpus:
    """A corpus routed once for many :meth:`SprachbundRouter.retrieve` calls (e.g. queries read in chunks).

    Attributes:
        texts: the corpus texts.
        routes: their routes.
        sprachbund: the sprachbund holding at least 90% of the corpus, else None.
        indexes: encoder name -> the corpus encoded by it (filled as queries need them).
    """

    texts: list[str]
    routes: list[Route]
    sprachbund: str | None
    indexes: dict[str, VectorIndex]

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class Classification:
    """A task head's prediction for one text."""

    label: str
    score: float
    probabilities: dict[str, float]
    route: Route
