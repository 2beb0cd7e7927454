"""``sbr eval``: retrieval (Table 3), classification heads, language ID and routing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from sprachbund_router.cli.apps import eval_app
from sprachbund_router.cli.options import ModelOpt, RevisionOpt, VerboseOpt, fail, setup_logging

OutputOpt = Annotated[Path | None, typer.Option("--output", "-o", help="Also write the results as JSON here.")]


def _prepare(model: str | None, revision: str | None, verbose: bool):
    setup_logging(verbose)
    from sprachbund_router.errors import SprachbundError
    from sprachbund_router.paths import data_dir
    from sprachbund_router.router import SprachbundRouter
    from training.corpus import load_manifest

    corpus = data_dir() / "corpus"
    try:
        load_manifest(corpus)
        router = SprachbundRouter.default() if model is None else SprachbundRouter.from_pretrained(model, revision=revision)
    except (SprachbundError, FileNotFoundError) as err:
        raise fail(err) from err
    return router, corpus


def _write(result: dict[str, Any], output: Path | None) -> None:
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
        typer.echo(f"wrote {output}")


def retrieval_markdown(result: dict[str, Any]) -> str:
    """The retrieval result as a markdown table (mean top-1 per system, MTEB F1 of the router)."""
    systems = result["systems"]
    head = "| pair | n | " + " | ".join(f"{s} (xx→yy / yy→xx / mean)" for s in systems) + " | router MTEB F1 |"
    lines = [head, "|" + "---|" * (len(systems) + 3)]
    for row in result["pairs"]:
        cells = [f"{v['xx2en']:.1f} / {v['en2xx']:.1f} / **{v['mean']:.1f}**" for v in row["systems"].values()]
        lines.append(f"| {row['pair']} | {row['n']} | " + " | ".join(cells) + f" | {row['systems']['router']['mteb_f1']:.1f} |")
    lines.append("| average | | " + " | ".join(f"**{result['average'][s]:.1f}**" for s in systems) + " | |")
    return "\n".join(lines)


@eval_app.command("retrieval")
def retrieval(
    model: ModelOpt = None,
    revision: RevisionOpt = None,
    pairs: Annotated[str | None, typer.Option("--pairs", help="Comma-separated pairs (default: the paper's Table 3 pairs).")] = None,
    n: Annotated[int, typer.Option("--n", min=100, help="Sentence pairs per language pair.")] = 1000,
    output: OutputOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Table 3: top-1 retrieval accuracy both ways per pair, base vs router vs baselines."""
    from training.evaluation import TABLE3_PAIRS, evaluate_retrieval

    router, corpus = _prepare(model, revision, verbose)
    result = evaluate_retrieval(router, corpus, pairs.split(",") if pairs else TABLE3_PAIRS, n)
    typer.echo(f"# {result['convention']}")
    typer.echo(retrieval_markdown(result))
    _write(result, output)


@eval_app.command("classify")
def classify(
    model: ModelOpt = None,
    revision: RevisionOpt = None,
    languages: Annotated[str | None, typer.Option("--languages", help="Comma-separated languages (default: all of the router's).")] = None,
    max_per_language: Annotated[int, typer.Option(help="Training names per language.")] = 300,
    max_test_per_language: Annotated[int, typer.Option(help="Test names per language.")] = 200,
    output: OutputOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Emoji-topic accuracy per language in the English, pivot and every-language settings, base vs router."""
    from training.evaluation import evaluate_classification

    router, corpus = _prepare(model, revision, verbose)
    result = evaluate_classification(router, corpus, languages.split(",") if languages else None,
                                     max_per_language, max_test_per_language)
    typer.echo(f"# {result['dataset']}; {result['protocol']}")
    typer.echo("| setting | base mean acc. | router mean acc. |\n|---|---|---|")
    for setting, res in result["results"].items():
        typer.echo(f"| {setting} | {res['base']['mean']} | {res['router']['mean']} |")
    _write(result, output)


@eval_app.command("langid")
def langid(
    model: ModelOpt = None,
    revision: RevisionOpt = None,
    per_bucket: Annotated[int, typer.Option(help="Texts per language and length bucket.")] = 100,
    languages: Annotated[str | None, typer.Option("--languages", help="Comma-separated languages (default: all it identifies).")] = None,
    output: OutputOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Language-ID and sprachbund-routing accuracy by text length, router vs other packages."""
    from training.evaluation import evaluate_langid

    router, corpus = _prepare(model, revision, verbose)
    result = evaluate_langid(router, corpus, per_bucket, languages.split(",") if languages else None)
    buckets = ["1-2 words", "3-5 words", "sentence"]
    typer.echo(f"# {result['n_texts']} held-out texts in {len(result['languages'])} languages; per length: "
               "language accuracy / routed to the right sprachbund / to a wrong one / fallback (%)")
    typer.echo("| identifier | " + " | ".join(buckets) + " | all | texts/s | 1-2-word texts/s |\n|" + "---|" * (len(buckets) + 4))
    for name, res in result["identifiers"].items():
        cells = [" / ".join(f"{res['by_length'][b][k]:.1f}" for k in ("language", "sprachbund", "wrong_sprachbund", "fallback"))
                 if b in res["by_length"] else "-" for b in buckets]
        typer.echo(f"| {name} | " + " | ".join(cells) + f" | {res['language']:.1f} / {res['sprachbund']:.1f} / "
                   f"{res['wrong_sprachbund']:.1f} / {res['fallback']:.1f} | {res['texts_per_second']:,} | "
                   f"{format(res['short_texts_per_second'], ',') if 'short_texts_per_second' in res else '-'} |")
    if "out_of_domain" in result:
        ood = result["out_of_domain"]
        typer.echo(f"\n# out of domain: {ood['n_texts']} VLC strings in {len(ood['languages'])} languages; per length: "
                   "routed to the right sprachbund / to a wrong one / fallback (%)")
        typer.echo("| rule | " + " | ".join(buckets) + " |\n|" + "---|" * (len(buckets) + 1))
        for name, res in ood["identifiers"].items():
            cells = [" / ".join(f"{res[b][k]:.1f}" for k in ("sprachbund", "wrong_sprachbund", "fallback")) if b in res else "-"
                     for b in buckets]
            typer.echo(f"| {name} | " + " | ".join(cells) + " |")
    _write(result, output)
