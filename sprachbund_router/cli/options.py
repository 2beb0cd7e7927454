"""Option definitions shared by the ``sbr`` commands (as spaCy's CLI does)."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer


class OutputFormat(str, Enum):
    """How results are printed."""

    tsv = "tsv"
    json = "json"


ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Router directory or Hub repo id. Default: the embedded default router (built by `sbr setup`)."),
]
RevisionOpt = Annotated[str | None, typer.Option("--revision", help="Hub revision (branch, tag or commit) of --model.")]
BackendOpt = Annotated[
    str, typer.Option("--backend", help="Inference backend: torch, onnx or onnx-int8 (ONNX needs `sbr export onnx` first).")
]
FormatOpt = Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format: tsv or json.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Texts per forward pass.")]
LangOpt = Annotated[
    str | None, typer.Option("--lang", help="Language of every input text (ISO code); skips language identification.")
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details (INFO level).")]
InputArg = Annotated[Path, typer.Argument(help="Text file, one text per line ('-' for stdin).")]


def fail(err: Exception) -> typer.Exit:
    """Print ``err`` in red on stderr and return the exit to raise (status 1, no traceback)."""
    typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=1)


def read_lines(path: Path, what: str) -> list[str]:
    """Read one text per line from ``path`` (``-`` = standard input); blank lines are an error."""
    if str(path) == "-":
        text = sys.stdin.read()
    else:
        if not path.is_file():
            raise typer.BadParameter(f"{what} file {path} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise typer.BadParameter(f"{what} file {path} is not UTF-8 text: {err}") from err
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise typer.BadParameter(f"{what} file {path} is empty")
    for i, line in enumerate(lines, 1):
        if not line.strip():
            raise typer.BadParameter(f"line {i} of {what} file {path} is empty (one text per line)")
    return lines


def emit(rows: list[dict[str, Any]], fmt: OutputFormat, columns: list[str]) -> None:
    """Print rows as TSV (with a header) or as a JSON list."""
    if fmt == OutputFormat.json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    typer.echo("\t".join(columns))
    for row in rows:
        typer.echo("\t".join(_cell(row.get(c)) for c in columns))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("\t", " ").replace("\n", " ")
