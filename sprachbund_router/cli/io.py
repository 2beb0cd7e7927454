"""Streaming input and output for the ``sbr`` commands.

Inputs are read in chunks of lines, so memory stays bounded whatever the file size; results are
written as each chunk is done (TSV, JSON lines, a JSON list closed on exit, or an ``.npy`` file
whose header is rewritten after every chunk), so an interrupted run keeps what was done and a
pipe sees output at once. "One text per line" means lines end with ``\\n`` (or ``\\r\\n``): other
Unicode line separators (``\\x0c``, ``\\x1e``, ``\\x85``, U+2028...) stay inside the text.
"""

from __future__ import annotations

import json
import stat
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import typer

from sprachbund_router.npy import NpyWriter

__all__ = ["CHUNK_LINES", "NpyWriter", "RowWriter", "check_input", "check_output", "count_lines", "iter_line_chunks",
           "read_all_lines"]

#: Lines per chunk: the first results appear after this many lines are done.
CHUNK_LINES = 512


def count_lines(path: Path) -> int | None:
    """Number of lines of a file (None for standard input, a pipe or a FIFO: reading them to count
    would consume them), for progress bars."""
    if str(path) == "-" or not path.is_file():
        return None
    n, last = 0, b"\n"
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            n += block.count(b"\n")
            last = block[-1:]
    return n + (last != b"\n")


def check_input(path: Path, what: str) -> None:
    """Refuse a missing input or a directory before any work starts."""
    if str(path) == "-":
        return
    if path.is_dir():
        raise typer.BadParameter(f"{what} {path} is a directory, expected a text file (one text per line)")
    if not path.exists():
        raise typer.BadParameter(f"{what} file {path} does not exist")
    if not (path.is_file() or stat.S_ISFIFO(path.stat().st_mode) or stat.S_ISCHR(path.stat().st_mode)):
        raise typer.BadParameter(f"{what} {path} is not a file, a pipe or a FIFO")


def iter_line_chunks(path: Path, what: str, chunk: int | None = None) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(number of the chunk's first line, lines)`` from a file (``-`` = standard input).

    Lines are split on ``\\n`` only (a trailing ``\\r`` is removed). Trailing blank lines are
    ignored; any other blank line, or bytes that are not UTF-8, stop the run with an error naming
    the line (the chunks before it have been yielded and their results written).
    """
    check_input(path, what)
    chunk = chunk or CHUNK_LINES
    handle: IO[bytes] = sys.stdin.buffer if str(path) == "-" else path.open("rb")
    try:
        buf: list[str] = []
        start, lineno, blank_at, seen = 1, 0, 0, False
        for raw in handle:
            lineno += 1
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise typer.BadParameter(f"line {lineno} of {what} file {path} is not UTF-8 text: {err}") from err
            line = line[:-1] if line.endswith("\n") else line
            line = line[:-1] if line.endswith("\r") else line
            if not line.strip():
                blank_at = blank_at or lineno
                continue
            if blank_at:
                raise typer.BadParameter(f"line {blank_at} of {what} file {path} is empty (one text per line)")
            if not buf:
                start = lineno
            buf.append(line)
            seen = True
            if len(buf) >= chunk:
                yield start, buf
                buf = []
        if buf:
            yield start, buf
        if not seen:
            raise typer.BadParameter(f"{what} file {path} is empty")
    finally:
        if handle is not sys.stdin.buffer:
            handle.close()


def read_all_lines(path: Path, what: str) -> list[str]:
    """Every line of a file (for inputs needed whole, such as a retrieval corpus)."""
    return [line for _, lines in iter_line_chunks(path, what, chunk=1 << 16) for line in lines]


def read_labelled(path: Path, what: str = "data") -> tuple[list[str], list[str], list[str | None] | None]:
    """``text<TAB>label[<TAB>lang]`` lines: the texts, their labels, and their languages (None when
    no line names one; lines may leave the language empty to have it identified).

    Raises:
        typer.BadParameter: a line without a tab, with more than three columns, or with an empty
            text or label (naming the line).
    """
    texts: list[str] = []
    labels: list[str] = []
    langs: list[str | None] = []
    for first, lines in iter_line_chunks(path, what, chunk=1 << 16):
        for i, line in enumerate(lines):
            cols = line.split("\t")
            where = f"line {first + i} of {what} file {path}"
            if not 2 <= len(cols) <= 3:
                raise typer.BadParameter(f"{where} has {len(cols)} column(s); expected text<TAB>label[<TAB>lang]")
            if not cols[0].strip() or not cols[1].strip():
                raise typer.BadParameter(f"{where} has an empty {'text' if not cols[0].strip() else 'label'}")
            texts.append(cols[0])
            labels.append(cols[1].strip())
            langs.append(cols[2].strip() or None if len(cols) == 3 else None)
    return texts, labels, (langs if any(lang is not None for lang in langs) else None)


def check_output(path: Path, inputs: Sequence[Path] = ()) -> None:
    """Refuse an output path that cannot be written, before any work starts: a directory, a
    missing folder, a read-only folder, or the same file as an input (a name or a hard link),
    which opening the output would empty."""
    import os

    if str(path) == "-":
        raise typer.BadParameter("output '-' (standard output) is not supported here: the output is a file written in "
                                 "place as rows arrive; give a file name")
    if path.is_dir():
        raise typer.BadParameter(f"output {path} is a directory; give a file name")
    if not path.parent.is_dir():
        raise typer.BadParameter(f"the folder of output {path} does not exist ({path.parent})")
    for source in inputs:
        if str(source) != "-" and path.exists() and source.exists() and os.path.samefile(source, path):
            raise typer.BadParameter(f"output {path} is the input file {source} (or a link to it); writing it would "
                                     "destroy the input: choose another output")
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise typer.BadParameter(f"output {path} cannot be written (no write permission)")


class RowWriter:
    """Write result rows as they come: TSV (header first), JSON lines, or a JSON list.

    The JSON list is opened with the first row and closed by :meth:`close` (also on
    interruption), so the output stays valid JSON.
    """

    def __init__(self, fmt: str, columns: list[str], stream: IO[str] | None = None) -> None:
        self.fmt, self.columns = fmt, columns
        self.stream = stream or sys.stdout
        self.rows = 0
        if fmt == "tsv":
            self.stream.write("\t".join(columns) + "\n")
        elif fmt == "json":
            self.stream.write("[")
        self.stream.flush()

    def write(self, rows: list[dict[str, Any]]) -> None:
        """Write ``rows`` and flush."""
        for row in rows:
            if self.fmt == "tsv":
                self.stream.write("\t".join(_cell(row.get(c)) for c in self.columns) + "\n")
            elif self.fmt == "jsonl":
                self.stream.write(json.dumps(row, ensure_ascii=False) + "\n")
            else:
                self.stream.write(("," if self.rows else "") + "\n " + json.dumps(row, ensure_ascii=False))
            self.rows += 1
        self.stream.flush()

    def close(self) -> None:
        """Finish the output (closes the JSON list)."""
        if self.fmt == "json":
            self.stream.write("\n]\n")
        self.stream.flush()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("\t", " ").replace("\n", " ").replace("\r", " ")
