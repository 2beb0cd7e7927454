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


@export_app.command("onnx")
def onnx(
    router_dir: RouterDirArg = None,
    max_int8_drop: Annotated[float, typer.Option(help="Refuse an int8 variant losing more top-1 points than this on any check set.")] = 0.5,
    min_cosine: Annotated[float, typer.Option(help="Minimum ONNX-vs-PyTorch cosine for fp32.")] = 0.9995,
    rows_per_language: Annotated[int, typer.Option(min=1, help="Dev rows per held-out source and language for the int8 check.")] = 30,
    int8_plan: Annotated[str | None, typer.Option(
        help="int8 plan to start from (never loosened): every MatMul..., feed-forward output projections in fp32, "
             "feed-forward layers in fp32. Default: the plan the router's build_config.json records.")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Export every encoder of a router to onnx/model_pooled.onnx (fp32) and onnx/model_pooled_qint8.onnx
    (int8), the int8 variant checked on the router's served vectors (held-out sources' dev halves)."""
    setup_logging(verbose)
    from exporters.onnx import default_check_sets, export_router, plan_names
    from sprachbund_router.errors import SprachbundError

    if int8_plan is not None and int8_plan not in plan_names():
        raise typer.BadParameter(f"--int8-plan must be one of {plan_names()}, got {int8_plan!r}")

    rdir = _router_dir(router_dir)
    try:
        parity, check, what = default_check_sets(rdir, rows_per_language)
        typer.echo(f"int8 check on {what}", err=True)
        infos = export_router(rdir, parity, check, min_cosine=min_cosine, max_int8_drop=max_int8_drop,
                              recorded_plan=int8_plan)
    except (SprachbundError, RuntimeError) as err:
        raise fail(err) from err
    for name, info in infos.items():
        int8, ev = info["int8"], info.get("int8_check", {})
        last = (ev.get("plans_tried") or [{}])[-1]
        state = (f"refused: {int8['refused']}" if "refused" in int8 else f"unverified: {int8['unverified']}"
                 if "unverified" in int8 else f"ok ({int8.get('plan', '')}{'; ' + int8['check'] if 'check' in int8 else ''})")
        typer.echo(f"{name}: fp32 parity min cos {info['fp32']['parity_min_cosine']:.5f}; int8 {state}; "
                   f"worst drop {last.get('max_drop')} points ({last.get('worst_source')}), mean {last.get('mean_drop')}")


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
