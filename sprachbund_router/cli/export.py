"""``sbr export``: ONNX variants and Hub repositories of a router directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from sprachbund_router.cli.apps import export_app
from sprachbund_router.cli.options import VerboseOpt, fail, setup_logging

RouterDirArg = Annotated[Path | None, typer.Argument(help="Router directory (default: the embedded default router).")]


def _router_dir(path: Path | None) -> Path:
    from sprachbund_router.paths import default_router_dir

    return path or default_router_dir()


def parity_and_eval_sets(n_pairs_per_language: int = 100) -> tuple[list[str], list[tuple[str, str]]]:
    """Parity texts (the bundled example: 120 real sentences, 12 languages) and held-out pairs."""
    from sprachbund_router.paths import data_dir
    from training.corpus import read_pairs
    from training.examples import EXAMPLE_LANGUAGES

    examples = Path(__file__).resolve().parents[1] / "examples"
    parity = (examples / "queries.txt").read_text(encoding="utf-8").splitlines()
    pairs = []
    for lang in EXAMPLE_LANGUAGES:
        pairs += read_pairs(data_dir() / "corpus", lang, "test")[-n_pairs_per_language:]
    if not pairs:  # no corpus built: fall back to the bundled example itself
        english = (examples / "corpus.txt").read_text(encoding="utf-8").splitlines()
        pairs = list(zip(parity, english))
    return parity, pairs


@export_app.command("onnx")
def onnx(
    router_dir: RouterDirArg = None,
    max_int8_drop: Annotated[float, typer.Option(help="Refuse an int8 file losing more top-1 points than this.")] = 1.0,
    min_cosine: Annotated[float, typer.Option(help="Minimum ONNX-vs-PyTorch cosine for fp32.")] = 0.999,
    pairs_per_language: Annotated[int, typer.Option(help="Held-out pairs per language for the int8 check.")] = 100,
    verbose: VerboseOpt = False,
) -> None:
    """Export every encoder of a router to onnx/model_pooled.onnx (fp32) and onnx/model_pooled_qint8.onnx (int8)."""
    setup_logging(verbose)
    from exporters.onnx import export_router
    from sprachbund_router.errors import SprachbundError

    rdir = _router_dir(router_dir)
    parity, pairs = parity_and_eval_sets(pairs_per_language)
    try:
        infos = export_router(rdir, parity, pairs, min_cosine=min_cosine, max_int8_drop=max_int8_drop)
    except (SprachbundError, RuntimeError) as err:
        raise fail(err) from err
    for name, info in infos.items():
        ev = info.get("retrieval_eval", {})
        typer.echo(f"{name}: fp32 parity min cos {info['fp32']['parity_min_cosine']:.5f}; "
                   f"int8 {'refused: ' + info['int8']['refused'] if 'refused' in info['int8'] else 'ok'}; "
                   f"top-1 torch {ev.get('torch_fp32')} / int8 {ev.get('onnx_int8')} on {ev.get('pairs')} pairs")


@export_app.command("hub")
def hub(
    router_dir: RouterDirArg = None,
    org: Annotated[str, typer.Option("--org", help="Hub user or organisation that will own the repos.")] = ...,  # type: ignore[assignment]
    name: Annotated[str | None, typer.Option("--name", help="Router repo name (default: the directory name).")] = None,
    dry_run: Annotated[Path | None, typer.Option("--dry-run", help="Write the repo folders here instead of uploading.")] = None,
    private: Annotated[bool, typer.Option(help="Create private repos.")] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Build one repo per encoder plus the router repo (cards included); upload, or --dry-run to a folder."""
    setup_logging(verbose)
    from exporters.hub import ExportError, plan_export, upload, write_folders
    from sprachbund_router.errors import SprachbundError

    rdir = _router_dir(router_dir)
    try:
        plan = plan_export(rdir, org, name, dry_run=dry_run is not None)
        if dry_run is not None:
            folders = write_folders(plan, dry_run)
            for repo, folder in folders.items():
                typer.echo(f"{repo}\t{folder}")
            return
        commits = upload(plan, rdir, private=private)
    except (ExportError, SprachbundError) as err:
        raise fail(err) from err
    except OSError as err:  # a read-only folder, a full disk: one line, not a traceback
        raise fail(f"cannot write the export: {err.strerror or err} ({err.filename or dry_run})") from err
    typer.echo(json.dumps(commits, indent=1))
