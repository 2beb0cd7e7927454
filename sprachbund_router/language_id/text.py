"""What identification reads off a text before any model: words, length buckets, scripts."""

from __future__ import annotations

from functools import lru_cache

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
