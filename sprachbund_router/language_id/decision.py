"""From a distribution over languages to a route or a fallback, per text and per length bucket."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sprachbund_router.language_id.base import Identifier
from sprachbund_router.language_id.text import has_letters, length_bucket, majority_script_text, mixed_scripts


def decide(
    identifier: Identifier, texts: Sequence[str], sprachbund_of: dict[str, str], min_confidence: float, level: str = "sprachbund"
) -> list[RoutingDecision]:
    """Route each text to a sprachbund or to the fallback, never guessing silently.

    At the ``"sprachbund"`` level, P(sprachbund) is the sum of P(language) over its languages;
    the most likely sprachbund is chosen when its mass reaches ``min_confidence`` (the reported
    language is the most likely one inside it). At the ``"language"`` level the single most
    likely language must reach it. Texts without letters always fall back.
    """
    out: list[RoutingDecision | None] = [None] * len(texts)
    scored = []
    for i, t in enumerate(texts):
        if not has_letters(t):
            out[i] = RoutingDecision(None, None, 0.0, "no letters to identify a language from")
        elif (why := mixed_scripts(t)) is not None:  # no language to report: a wrong route is worse than a fallback
            out[i] = RoutingDecision(None, None, 0.0, why)
        else:
            scored.append(i)
    if scored:  # vectorised over the batch: one distribution, one mass product, argmaxes per row
        probs = identifier.distribution([majority_script_text(texts[i]) for i in scored])
        langs = list(identifier.languages)
        groups = sorted({sprachbund_of[lang] for lang in langs})
        group_of_lang = np.array([groups.index(sprachbund_of[lang]) for lang in langs])
        rows = np.arange(len(scored))
        if level == "language":
            best = probs.argmax(axis=1)
            conf = probs[rows, best]
            chosen = group_of_lang[best]
        else:
            member = np.zeros((len(langs), len(groups)))
            member[np.arange(len(langs)), group_of_lang] = 1.0
            mass = probs @ member
            chosen = mass.argmax(axis=1)
            conf = mass[rows, chosen]
            best = np.where(group_of_lang[None, :] == chosen[:, None], probs, -1.0).argmax(axis=1)
        what = "language" if level == "language" else "sprachbund"
        for row, i in enumerate(scored):
            lang, group, c = langs[best[row]], groups[chosen[row]], float(conf[row])
            reason = None if c >= min_confidence else (
                f"{what} uncertain: {lang if level == 'language' else group} {c:.2f} < {min_confidence:.2f}")
            out[i] = RoutingDecision(lang, group, c, reason)
    return [d for d in out if d is not None]


@dataclass(frozen=True)
class RoutingDecision:
    """Where identification sends one text.

    Attributes:
        language: most likely language (inside the chosen sprachbund), None without letters.
        sprachbund: its sprachbund.
        confidence: probability of the decision (sprachbund mass, or language probability).
        reason: why the text falls back, None when it is routed.
    """

    language: str | None
    sprachbund: str | None
    confidence: float
    reason: str | None = None


def decide_by_length(
    identifiers: dict[str, Identifier], rules: dict[str, tuple[str, float]], default: tuple[str, float], texts: Sequence[str],
    sprachbund_of: dict[str, str], level: str = "sprachbund",
) -> list[RoutingDecision]:
    """:func:`decide` with a backend and threshold per length bucket (``rules``: bucket ->
    (backend, min_confidence); other buckets use ``default``). ``identifiers``: backend -> identifier."""
    if not rules:
        return decide(identifiers[default[0]], texts, sprachbund_of, default[1], level)
    by_rule: dict[tuple[str, float], list[int]] = {}
    for i, text in enumerate(texts):
        by_rule.setdefault(rules.get(length_bucket(text), default), []).append(i)
    out: list[RoutingDecision | None] = [None] * len(texts)
    for (backend, threshold), rows in by_rule.items():
        for i, d in zip(rows, decide(identifiers[backend], [texts[i] for i in rows], sprachbund_of, threshold, level)):
            out[i] = d
    return out  # type: ignore[return-value]
