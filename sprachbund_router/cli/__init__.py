"""The ``sbr`` command line (typer)."""

from sprachbund_router.cli.main import app

__all__ = ["app"]
