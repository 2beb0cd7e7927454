"""Option definitions shared by the ``sbr`` commands (as spaCy's CLI does)."""

from __future__ import annotations

import logging
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from sprachbund_router.backend import ENCODER_BACKENDS


class OutputFormat(str, Enum):
    """How results are printed (all three are written as they come)."""

    tsv = "tsv"
    json = "json"
    jsonl = "jsonl"


class Scoring(str, Enum):
    """How retrieval ranks corpus texts."""

    cosine = "cosine"
    margin = "margin"


#: Inference backend of the router's encoders (the names of :data:`~sprachbund_router.backend.ENCODER_BACKENDS`).
Backend = Enum("Backend", {b.replace("-", "_"): b for b in ENCODER_BACKENDS}, type=str)  # type: ignore[misc]


ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Router directory or Hub repo id. Default: the embedded default router (built by `sbr setup`)."),
]
RevisionOpt = Annotated[str | None, typer.Option("--revision", help="Hub revision (branch, tag or commit) of --model.")]
BackendOpt = Annotated[
    Backend, typer.Option("--backend", help="Inference backend: auto (ONNX where `sbr export onnx` wrote checked graphs and "
                          "onnxruntime is installed, int8 on CPUs with fast int8 where it loses at most 0.1 points; "
                          "else torch), torch, onnx or onnx-int8.")
]
FormatOpt = Annotated[OutputFormat, typer.Option("--format", "-f", help="Output: tsv, json (a list) or jsonl (one object per line).")]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Texts per forward pass.")]
LangOpt = Annotated[
    str | None, typer.Option("--lang", help="Language of every input text (ISO code); skips language identification.")
]
ScoringOpt = Annotated[
    Scoring | None,
    typer.Option("--scoring", help="cosine, or margin: ratio margin (Artetxe & Schwenk 2019), which discounts texts "
                 "near everything; its query-side neighbours are the queries of the same 512-line chunk. Default: the "
                 "router's retrieval_scoring. Scores are on the router's scale: cosines of translation pairs "
                 "sit near 0.7, not the plain e5's 0.9 (docs/guide/usage.md); margins above 1 mean closer than usual."),
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details (INFO level).")]
InputArg = Annotated[Path, typer.Argument(help="Text file, one text per line ('-' for stdin).")]


def fail(err: Exception) -> typer.Exit:
    """Print ``err`` in red on stderr and return the exit to raise (status 1, no traceback)."""
    typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=1)


def setup_logging(verbose: bool) -> None:
    """Log to stderr: INFO with ``--verbose``, WARNING otherwise."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
