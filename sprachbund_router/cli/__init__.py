"""The ``sbr`` command line (typer).

The apps live in :mod:`sprachbund_router.cli.apps`; importing this package registers every
command on them (the command modules import lazily whatever heavy library code they wrap, so the
CLI loads without the training extras).
"""

from sprachbund_router.cli import evaluate, export, runtime, train  # noqa: F401  (registers the commands)
from sprachbund_router.cli.apps import app

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the ``sbr`` console script (and of ``python -m sprachbund_router.cli``)."""
    app()
