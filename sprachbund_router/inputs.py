"""Validation of the texts that callers pass to the router.

The router never guesses silently: a ``None``, a non-string or an empty text raises
:class:`~sprachbund_router.errors.InvalidInputError` naming the offending position, and a
text longer than :data:`MAX_CHARS` is cut with a warning (the encoder would truncate it to
its maximum number of tokens anyway).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

from sprachbund_router.errors import InvalidInputError

logger = logging.getLogger(__name__)

#: Texts longer than this many characters are cut before tokenisation. 512 tokens of
#: XLM-R's vocabulary rarely cover more than ~4k characters, so nothing the encoder
#: would see is lost.
MAX_CHARS = 20_000


def validate_texts(texts: str | Iterable[str], *, name: str = "texts") -> list[str]:
    """Return ``texts`` as a list of usable strings, or raise.

    Args:
        texts: one string or an iterable of strings.
        name: what to call the argument in error messages.

    Raises:
        InvalidInputError: ``texts`` is None, bytes, empty, or holds an item that is not a
            non-blank string. The message names the index of the first bad item.
    """
    if texts is None:
        raise InvalidInputError(f"{name} is None; pass a string or a list of strings")
    if isinstance(texts, str):
        texts = [texts]
    elif isinstance(texts, (bytes, bytearray, memoryview)):
        raise InvalidInputError(f"{name} is bytes; decode it to str first (e.g. .decode('utf-8'))")
    elif isinstance(texts, Mapping):
        raise InvalidInputError(f"{name} is a mapping ({type(texts).__name__}); pass its texts as a list "
                                "(iterating a mapping would encode its keys)")
    try:
        items = list(texts)
    except TypeError as err:
        raise InvalidInputError(
            f"{name} must be a string or an iterable of strings, got {type(texts).__name__}"
        ) from err
    if not items:
        raise InvalidInputError(f"{name} is empty; pass at least one text")
    out: list[str] = []
    n_cut = 0
    for i, text in enumerate(items):
        if text is None:
            raise InvalidInputError(f"{name}[{i}] is None")
        if not isinstance(text, str):
            raise InvalidInputError(f"{name}[{i}] is {type(text).__name__}, not str")
        if not text.strip():
            raise InvalidInputError(f"{name}[{i}] is empty or whitespace only")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise InvalidInputError(f"{name}[{i}] is not valid Unicode text: {err.reason} at character {err.start} "
                                    f"({text[err.start]!r}); a lone surrogate usually comes from decoding with "
                                    "errors='surrogateescape'") from None
        if len(text) > MAX_CHARS:
            text = text[:MAX_CHARS]
            n_cut += 1
        out.append(text)
    if n_cut:
        logger.warning(
            "%d of %d %s were longer than %d characters and were cut to that length",
            n_cut, len(out), name, MAX_CHARS,
        )
    return out


def validate_langs(langs: str | Sequence[str | None] | None, n: int) -> list[str | None]:
    """Broadcast ``lang=`` to one entry per text (None entries mean "identify")."""
    if langs is None:
        return [None] * n
    if isinstance(langs, str):
        return [langs] * n
    out = list(langs)
    if len(out) != n:
        raise InvalidInputError(f"lang has {len(out)} entries but there are {n} texts")
    for i, lang in enumerate(out):
        if lang is not None and not isinstance(lang, str):
            raise InvalidInputError(f"lang[{i}] is {type(lang).__name__}, not str")
    return out
