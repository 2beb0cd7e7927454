"""The runtime commands of ``sbr``: setup, identify, encode, retrieve, classify and ``sbr index``.

Thin wrappers over the library (``SprachbundRouter``, ``build_disk_index``); the typer apps they
register on live in :mod:`sprachbund_router.cli.apps`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from sprachbund_router.cli.apps import app, index_app
from sprachbund_router.cli.io import (
    NpyWriter,
    RowWriter,
    check_input,
    check_output,
    count_lines,
    iter_line_chunks,
    read_all_lines,
)
from sprachbund_router.cli.options import (
    Backend,
    BackendOpt,
    BatchOpt,
    FormatOpt,
    InputArg,
    LangOpt,
    ModelOpt,
    OutputFormat,
    RevisionOpt,
    ScoringOpt,
    VerboseOpt,
    fail,
    setup_logging,
)
from sprachbund_router.errors import SprachbundError


def _load(model: str | None, revision: str | None, backend: Backend):
    from sprachbund_router.router import SprachbundRouter

    try:
        if model is None:
            return SprachbundRouter.default(backend=backend.value)
        return SprachbundRouter.from_pretrained(model, revision=revision, backend=backend.value)
    except SprachbundError as err:
        raise fail(err) from err


def _stream(input: Path, step: Callable[[int, list[str]], None], close: Callable[[], None],
            interrupted: Callable[[], str], start: Callable[[], None] | None = None) -> None:
    """Run ``start()``, then ``step(first_line, lines)`` on each chunk of ``input`` with a progress
    bar; Ctrl-C prints ``interrupted()`` and exits 130, package errors exit 1, an output that cannot
    be written (a full disk, ``> /dev/full``) exits 1 with one line; ``close()`` runs in every case."""
    from tqdm.auto import tqdm

    with _output_errors():
        try:
            if start is not None:
                start()
            with tqdm(total=count_lines(input), unit="line", disable=None, file=sys.stderr) as bar:
                for first, lines in iter_line_chunks(input, "input"):
                    step(first, lines)
                    bar.update(len(lines))
        except KeyboardInterrupt:
            typer.echo(interrupted(), err=True)
            raise typer.Exit(code=130) from None
        except SprachbundError as err:
            raise fail(err) from err
        finally:
            close()


@contextlib.contextmanager
def _output_errors() -> Iterator[None]:
    """Writing errors as Unix tools report them: a reader that went away (``| head``) ends quietly
    with status 0; any other write error (``ENOSPC``, ``EROFS``...) is one line and status 1. Either
    way standard output is pointed at /dev/null, so the interpreter's final flush cannot fail again."""
    try:
        yield
    except BrokenPipeError:
        _silence_stdout()
        raise typer.Exit(code=0) from None
    except OSError as err:
        _silence_stdout()
        raise fail(f"cannot write the output: {err.strerror or err}") from None


def _silence_stdout() -> None:
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # pragma: no cover - stdout already closed
        pass


def _stream_rows(
    input: Path, fmt: OutputFormat, columns: list[str], work: Callable[[int, list[str]], list[dict[str, Any]]]
) -> None:
    """Run ``work(first_line, lines)`` on each chunk of ``input`` and write its rows at once."""
    writer: RowWriter | None = None
    done = 0

    def start() -> None:
        nonlocal writer
        writer = RowWriter(fmt.value, columns)  # the header is written here, inside the error handling

    def step(first: int, lines: list[str]) -> None:
        nonlocal done
        writer.write(work(first, lines))  # type: ignore[union-attr]
        done += len(lines)

    def close() -> None:
        if writer is not None:
            writer.close()

    _stream(input, step, close, lambda: f"interrupted: the results of the first {done} lines were written", start)


@app.command()
def identify(
    input: InputArg,
    model: ModelOpt = None,
    revision: RevisionOpt = None,
    backend: BackendOpt = Backend.auto,
    fmt: FormatOpt = OutputFormat.tsv,
    verbose: VerboseOpt = False,
) -> None:
    """Identify each line's language and the sprachbund and encoder it routes to (streamed)."""
    setup_logging(verbose)
    check_input(input, "input")
    router = _load(model, revision, backend)

    def work(first: int, lines: list[str]) -> list[dict[str, Any]]:
        return [{"line": first + i, "language": r.language, "sprachbund": r.sprachbund, "confidence": r.confidence,
                 "encoder": r.encoder, "fallback": r.fallback, "reason": r.reason}
                for i, r in enumerate(router.route(lines))]

    _stream_rows(input, fmt, ["line", "language", "sprachbund", "confidence", "encoder", "fallback", "reason"], work)


@app.command()
def encode(
    input: InputArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the vectors (.npy, float32; written as it goes).")],
    model: ModelOpt = None,
    revision: RevisionOpt = None,
    backend: BackendOpt = Backend.auto,
    lang: LangOpt = None,
    batch_size: BatchOpt = 32,
    verbose: VerboseOpt = False,
) -> None:
    """Embed each line with its sprachbund encoder into a float32 .npy array (row i = line i).

    The file is valid after every chunk of lines: an interrupted run keeps the rows done.
    """
    setup_logging(verbose)
    check_input(input, "input")
    check_output(output, [input])
    router = _load(model, revision, backend)
    writer = NpyWriter(output)
    _stream(input, lambda _, lines: writer.append(router.encode(lines, lang=lang, batch_size=batch_size)), writer.close,
            lambda: f"interrupted: {output} holds the vectors of the first {writer.rows} lines")
    typer.echo(f"wrote {writer.rows} vectors of dim {writer.dim} to {output}", err=True)


@app.command()
def retrieve(
    queries: Annotated[Path, typer.Option("--queries", "-q", help="Query file, one sentence per line (streamed).")],
    corpus: Annotated[Path | None, typer.Option("--corpus", "-c", help="Corpus file, one sentence per line.")] = None,
    index: Annotated[Path | None, typer.Option("--index", "-i", help="Index directory built by `sbr index build`.")] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Hits per query.")] = 1,
    model: ModelOpt = None,
    revision: RevisionOpt = None,
    backend: BackendOpt = Backend.auto,
    fmt: FormatOpt = OutputFormat.tsv,
    aligned: Annotated[
        bool, typer.Option("--aligned",
                           help="Line i of the corpus translates line i of the queries: also report top-1 accuracy.")
    ] = False,
    batch_size: BatchOpt = 32,
    scoring: ScoringOpt = None,
    nprobe: Annotated[int | None, typer.Option("--nprobe", min=1, help="FAISS lists searched per query (an --index "
                                               "built with FAISS; default: the one stored with it).")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Cross-lingual sentence retrieval (Tatoeba style): the nearest corpus sentences of each query.

    The corpus is encoded once; queries are read and answered chunk by chunk.
    """
    setup_logging(verbose)
    check_input(queries, "queries")
    if (corpus is None) == (index is None):
        raise typer.BadParameter("give exactly one of --corpus FILE and --index DIR")
    if corpus is not None:
        c_texts: list[str] | None = read_all_lines(corpus, "corpus")
        n_corpus = len(c_texts)
    else:
        from sprachbund_router.disk_index import DiskIndex

        try:
            disk = DiskIndex.load(index, nprobe=nprobe)  # type: ignore[arg-type]
        except SprachbundError as err:
            raise fail(err) from err
        c_texts, n_corpus = disk.texts, len(disk)
    if aligned and str(queries) != "-" and (n_q := count_lines(queries)) != n_corpus:
        raise typer.BadParameter(f"--aligned needs as many corpus lines ({n_corpus}) as queries ({n_q})")
    if top_k > n_corpus:
        typer.echo(f"note: --top-k {top_k} is more than the {n_corpus} corpus lines; returning {n_corpus} hits", err=True)
        top_k = n_corpus
    router = _load(model, revision, backend)
    try:
        prepared = router.prepare_corpus(c_texts) if corpus is not None else disk
        if index is not None:
            router.check_index(disk)
    except SprachbundError as err:
        raise fail(err) from err
    correct = total = 0

    def work(first: int, lines: list[str]) -> list[dict[str, Any]]:
        nonlocal correct, total
        rows = []
        for i, res in enumerate(router.retrieve(lines, prepared, top_k=top_k, batch_size=batch_size,
                                                 scoring=scoring.value if scoring else None)):
            line = first + i
            correct += res.indices[0] == line - 1
            total += 1
            for rank, (j, score) in enumerate(zip(res.indices, res.scores), 1):
                rows.append({"query_line": line, "rank": rank, "corpus_line": j + 1, "score": score,
                             "query_language": res.route.language, "encoder": res.encoder,
                             "query": lines[i], "match": c_texts[j] if c_texts is not None else None})
        return rows

    columns = ["query_line", "rank", "corpus_line", "score", "query_language", "encoder", "query", "match"]
    _stream_rows(queries, fmt, columns, work)
    if aligned:
        with _output_errors():
            typer.echo(f"# top-1 accuracy: {correct}/{total} = {correct / max(total, 1):.3f}", err=fmt != OutputFormat.tsv)


@app.command()
def classify(
    input: InputArg,
    task: Annotated[str, typer.Option("--task", "-t", help="Task head to run (see the router's config).")],
    model: ModelOpt = None,
    revision: RevisionOpt = None,
    backend: BackendOpt = Backend.auto,
    lang: LangOpt = None,
    fmt: FormatOpt = OutputFormat.tsv,
    verbose: VerboseOpt = False,
) -> None:
    """Classify each line with the task head of its sprachbund (streamed)."""
    setup_logging(verbose)
    check_input(input, "input")
    router = _load(model, revision, backend)
    if task not in router.tasks:
        raise fail(ValueError(f"this router has no head for task {task!r}; available: {router.tasks or 'none'}"))

    def work(first: int, lines: list[str]) -> list[dict[str, Any]]:
        return [{"line": first + i, "label": p.label, "score": p.score, "language": p.route.language,
                 "sprachbund": p.route.sprachbund} for i, p in enumerate(router.classify(lines, task=task, lang=lang))]

    _stream_rows(input, fmt, ["line", "label", "score", "language", "sprachbund"], work)


@index_app.command("build")
def index_build(
    corpus: InputArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="Index directory to create (new or empty).")],
    model: ModelOpt = None,
    revision: RevisionOpt = None,
    backend: BackendOpt = Backend.auto,
    lang: LangOpt = None,
    ann: Annotated[str, typer.Option("--ann", help="auto (FAISS IVF from 200,000 texts), faiss or exact.")] = "auto",
    texts: Annotated[bool, typer.Option("--texts/--no-texts", help="Store the corpus texts in the index.")] = True,
    batch_size: BatchOpt = 32,
    verbose: VerboseOpt = False,
) -> None:
    """Encode a corpus file (streamed, two passes) into an index directory."""
    from tqdm.auto import tqdm

    from sprachbund_router.indexing import build_disk_index
    from sprachbund_router.staging import is_new_directory

    setup_logging(verbose)
    if str(corpus) == "-":
        raise typer.BadParameter("the corpus is read twice: give a file, not '-'")
    check_input(corpus, "corpus")
    if ann not in ("auto", "faiss", "exact"):
        raise typer.BadParameter(f"--ann must be auto, faiss or exact, got {ann!r}")
    if str(output) == "-":
        raise typer.BadParameter("an index is a directory: give its path, not '-'")
    if not is_new_directory(output):
        raise typer.BadParameter(f"{output} exists and is not empty")
    if ann == "faiss":  # before any encoding: a missing extra is named at once
        try:
            import faiss  # noqa: F401
        except ImportError:
            raise typer.BadParameter("--ann faiss needs FAISS: pip install 'sprachbund-router[index]' (faiss-cpu)") from None
    router = _load(model, revision, backend)
    try:
        with _output_errors(), tqdm(total=count_lines(corpus), unit="line", disable=None, file=sys.stderr) as bar:
            out = build_disk_index(router, lambda: (lines for _, lines in iter_line_chunks(corpus, "corpus")), output,
                                   lang=lang, batch_size=batch_size, ann=ann, keep_texts=texts, on_chunk=bar.update)
    except KeyboardInterrupt:
        typer.echo("interrupted: no index was written", err=True)
        raise typer.Exit(code=130) from None
    except SprachbundError as err:
        raise fail(err) from err
    import json

    meta = json.loads((out / "index.json").read_text())
    typer.echo(f"index {out}: {meta['size']} vectors of dim {meta['dim']}, encoder {meta['encoder']}, search {meta['search']}",
               err=True)
