"""Every typer app of ``sbr``, in one leaf module (as spaCy's ``cli/_util.py``).

Command modules (:mod:`~sprachbund_router.cli.runtime`, :mod:`~sprachbund_router.cli.train`,
:mod:`~sprachbund_router.cli.evaluate`, :mod:`~sprachbund_router.cli.export`) import the app they
register on from here; this module imports none of them, so there is no import cycle.
:mod:`sprachbund_router.cli` imports the command modules and exposes :func:`~sprachbund_router.cli.main`.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup


def _flags_without_type(params: list[Any]) -> list[Any]:
    # typer labels its own flags (--help, --install-completion) "<bool>"; a flag takes no value
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class _Command(TyperCommand):
    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_without_type(super().get_params(ctx))


class _Group(TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_without_type(super().get_params(ctx))


class _Typer(typer.Typer):
    """A typer app whose commands and groups show no type on a flag (it takes no value)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cls=_Group, **kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs.setdefault("cls", _Command)
        return super().command(*args, **kwargs)


app = _Typer(
    name="sbr",
    help="Route text to the encoder of its representation sprachbund: identify, encode, retrieve, classify.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
train_app = _Typer(help="Build corpora, language vectors, sprachbunds and routers.", no_args_is_help=True)
eval_app = _Typer(help="Measure retrieval, classification and routing on held-out real data.", no_args_is_help=True)
export_app = _Typer(help="Export a router: ONNX (fp32, int8) and Hub repositories with model cards.",
                         no_args_is_help=True)
index_app = _Typer(help="Persistent corpus indexes: build once, search with `sbr retrieve --index`.",
                        no_args_is_help=True)

def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"sprachbund-router {version('sprachbund-router')}")
        except PackageNotFoundError:  # run from a source tree that is not installed
            from sprachbund_router import __version__

            typer.echo(f"sprachbund-router {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Route text to the encoder of its representation sprachbund: identify, encode, retrieve, classify."""


app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
app.add_typer(export_app, name="export")
app.add_typer(index_app, name="index")
