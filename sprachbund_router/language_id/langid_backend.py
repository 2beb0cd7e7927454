"""langid.py (Lui & Baldwin 2012), its naive-Bayes model from the PyPI package, restricted to the router's languages."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: langid codes that differ from the codes the router uses.
LANGID_ALIASES = {"no": "nb"}



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
        nextmove, state_logp = _langid_tables()
        self._nextmove, self._state_logp = nextmove, np.ascontiguousarray(state_logp[:, mask])
        self._pc = self._ident.nb_pc[mask]
        self.languages = [LANGID_ALIASES.get(c, c) for c, m in zip(self._ident.nb_classes, mask) if m]

    def distribution(self, texts: Sequence[str], chunk: int = 256) -> np.ndarray:
        """Posterior ``[n, len(languages)]`` over the router's languages.

        langid's model is a byte-level automaton whose states emit n-gram features, scored by
        naive Bayes. Instead of building each text's feature vector in a Python loop over its
        bytes (langid's ``instance2fv``), texts of similar length (``chunk`` at a time) walk the
        automaton together, one numpy step per byte position, adding each visited state's
        precomputed class log-probabilities; the few longest texts of a chunk finish alone. The
        sums are langid's own (same model, same features), in another order.
        """
        out = np.empty((len(texts), len(self.languages)), dtype=np.float64)
        encoded = [t.encode("utf-8") for t in texts]
        lengths = np.fromiter((len(b) for b in encoded), dtype=np.int64, count=len(encoded))
        order = np.argsort(lengths, kind="stable")
        for start in range(0, len(texts), chunk):
            rows = order[start : start + chunk]
            logp = self._walk([encoded[i] for i in rows], lengths[rows]) + self._pc
            logp -= logp.max(axis=1, keepdims=True)
            probs = np.exp(logp)
            out[rows] = probs / probs.sum(axis=1, keepdims=True)
        return out

    def _walk(self, data: list[bytes], lengths: np.ndarray, alone: int = 16) -> np.ndarray:
        """Summed state log-probabilities ``[n, classes]`` of texts sorted by length."""
        nextmove, state_logp = self._nextmove, self._state_logp
        n, longest = len(data), int(lengths[-1]) if len(data) else 0
        logp = np.zeros((n, state_logp.shape[1]))
        buf = np.zeros((n, longest), dtype=np.int64)
        for i, b in enumerate(data):
            buf[i, : len(b)] = np.frombuffer(b, dtype=np.uint8)
        state = np.zeros(n, dtype=np.int64)
        first = 0  # rows [first:] still have bytes at this position (lengths ascend)
        for t in range(longest):
            while lengths[first] <= t:
                first += 1
            if n - first < alone:  # few texts left: a scalar walk is cheaper than numpy steps
                break
            state[first:] = nextmove[(state[first:] << 8) + buf[first:, t]]
            logp[first:] += state_logp[state[first:]]
        else:
            return logp
        table = self._ident.tk_nextmove
        for i in range(first, n):
            s, visited = int(state[i]), []
            for byte in data[i][t:]:
                s = table[(s << 8) + byte]
                visited.append(s)
            logp[i] += np.bincount(visited, minlength=len(state_logp)) @ state_logp
        return logp


@lru_cache(maxsize=1)
def _langid_tables() -> tuple[np.ndarray, np.ndarray]:
    """langid's automaton as arrays: next state per (state, byte), and per state the summed
    log-probabilities (all 97 classes) of the n-gram features it emits."""
    m = _langid_model()
    nextmove = np.frombuffer(m.tk_nextmove, dtype=np.uint16).astype(np.int64)
    state_logp = np.zeros((len(nextmove) >> 8, m.nb_ptc.shape[1]))
    for state, features in m.tk_output.items():
        for f in features:
            state_logp[state] += m.nb_ptc[f]
    return nextmove, state_logp
