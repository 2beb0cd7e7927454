"""The router's own character n-gram identifier (``language_id/ngram.safetensors`` in the router folder)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sprachbund_router.errors import CheckpointError
from sprachbund_router.tensors import load_tensors

#: Where a router keeps its own identifier, relative to the router directory.
NGRAM_FILE = "language_id/ngram.safetensors"
#: Character n-gram orders of the router's own identifier.
NGRAM_ORDERS = (1, 2, 3, 4)
_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant: n-gram codes are a polynomial in it (wrapping)


def ngram_codes(texts: Sequence[str], orders: Sequence[int] = NGRAM_ORDERS) -> tuple[np.ndarray, np.ndarray]:
    """Character n-grams of every text as 64-bit codes, for the whole batch at once.

    Each text is casefolded, its whitespace collapsed and padded with one space on each side (so
    word starts and ends are n-grams of their own); the texts are joined by NUL into one array of
    code points and the codes of every order are computed in a few numpy passes over it (an
    n-gram spanning a NUL is dropped).

    Returns:
        (rows, codes): the text index of each n-gram and its code (``uint64``).
    """
    padded = [" " + " ".join(t.casefold().replace("\0", " ").split()) + " " for t in texts]
    if not padded:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64)
    chars = np.frombuffer("\0".join(padded).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    sizes = np.fromiter((len(p) + 1 for p in padded), dtype=np.int64, count=len(padded))
    row_of = np.repeat(np.arange(len(padded)), sizes)[: len(chars)]
    zeros = np.concatenate([[0], np.cumsum(chars == 0)])  # NULs before each position
    rows, codes = [], []
    with np.errstate(over="ignore"):
        code = np.zeros(len(chars), dtype=np.uint64)
        for n in range(1, max(orders) + 1):
            m = len(chars) - n + 1
            if m <= 0:
                break
            code = code[:m] * _MIX + chars[n - 1 : n - 1 + m] + np.uint64(n)
            if n in orders:
                ok = zeros[n : n + m] == zeros[:m]  # no NUL inside the window
                rows.append(row_of[:m][ok])
                codes.append(code[ok])
    return np.concatenate(rows), np.concatenate(codes)


class NgramIdentifier:
    """The router's own identifier: multinomial naive Bayes over character 1-4-grams, trained at
    build time on the router's languages (``training/identifier.py``) and stored in the router
    directory (``language_id/ngram.safetensors``: sorted n-gram codes, per-language log-probabilities).

    It names every router language that has training text, including those neither langid nor
    lid.176 knows (Hausa, Oromo...). A batch is scored with numpy and one sparse product.

    Args:
        languages: router codes to choose from (the file may hold more).
        directory: the router directory.

    Raises:
        CheckpointError: the file is missing, corrupt, or holds none of ``languages``.
    """

    name = "ngram"

    def __init__(self, languages: Sequence[str], directory: str | Path) -> None:
        from sprachbund_router.validation import confined

        path = confined(Path(directory), NGRAM_FILE, "language_id (backend 'ngram')")
        if not path.is_file():
            raise CheckpointError(f"language-ID backend 'ngram' needs {NGRAM_FILE} in the router directory; it is missing "
                                  "(`sbr train build` writes it)")
        tensors, meta = load_tensors(path)
        keys, logp = tensors.get("codes"), tensors.get("log_probs")
        stored = list(meta.get("languages", []))
        if keys is None or logp is None or logp.ndim != 2 or logp.shape != (len(keys), len(stored)):
            raise CheckpointError(f"{path} is not an n-gram identifier: expected tensors 'codes' [n] and 'log_probs' "
                                  "[n, languages] and metadata 'languages' of matching sizes")
        if list(meta.get("orders", [])) != list(NGRAM_ORDERS):
            raise CheckpointError(f"{path} uses n-gram orders {meta.get('orders')}, this version reads {list(NGRAM_ORDERS)}")
        wanted = set(languages)
        self.languages = [lang for lang in stored if lang in wanted]
        if not self.languages:
            raise CheckpointError(f"{path} knows none of the router languages {sorted(languages)}")
        cols = [stored.index(lang) for lang in self.languages]
        self.temperature = float(meta.get("temperature", 1.0))
        self.length_power = float(meta.get("length_power", 0.0))
        if not (self.temperature > 0 and 0 <= self.length_power <= 1):
            raise CheckpointError(f"{path}: temperature must be > 0 and length_power in [0, 1], got "
                                  f"{self.temperature} and {self.length_power}")
        if len(keys) == 0:
            raise CheckpointError(f"{path} is damaged: it holds no n-gram codes")
        if keys.dtype != np.uint64 or np.any(keys[1:] <= keys[:-1]):
            raise CheckpointError(f"{path}: 'codes' must be strictly increasing uint64 n-gram codes")
        self._codes = keys
        self._logp = np.ascontiguousarray(np.asarray(logp, dtype=np.float32)[:, cols])

    def log_likelihoods(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Naive-Bayes log-likelihoods ``[n, len(languages)]`` and each text's n-gram count."""
        from scipy.sparse import csr_matrix

        rows, codes = ngram_codes(texts)
        at = np.minimum(np.searchsorted(self._codes, codes), len(self._codes) - 1)
        known = self._codes[at] == codes
        counts = csr_matrix((np.ones(int(known.sum()), dtype=np.float32), (rows[known], at[known])),
                            shape=(len(texts), len(self._codes)))
        return np.asarray(counts @ self._logp, dtype=np.float64), np.bincount(rows, minlength=len(texts))

    def distribution(self, texts: Sequence[str]) -> np.ndarray:
        """Posterior ``[n, len(languages)]`` (uniform prior), calibrated: naive Bayes treats a text's
        n-grams as independent and grows over-confident with length, so the log-likelihoods are
        divided by ``temperature * n_grams ** length_power`` (both fitted on the dev split at build
        time, stored with the model)."""
        logp, n = self.log_likelihoods(texts)
        logp /= self.temperature * np.maximum(n, 1)[:, None] ** self.length_power
        logp -= logp.max(axis=1, keepdims=True)
        probs = np.exp(logp)
        return probs / probs.sum(axis=1, keepdims=True)
