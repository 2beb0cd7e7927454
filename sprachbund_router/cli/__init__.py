"""The ``sbr`` command line (typer).

The apps live in :mod:`sprachbund_router.cli.apps`; importing this package registers every
command on them (the command modules import lazily whatever heavy library code they wrap, so the
CLI loads without the training extras).
"""

from sprachbund_router.cli import evaluate, export, runtime, train  # noqa: F401  (registers the commands)
from sprachbund_router.cli.apps import app

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the ``sbr`` console script (and of ``python -m sprachbund_router.cli``).

    Transformers' weight-loading progress bars are silenced (sbr shows its own) through the
    environment, which transformers reads when a backend first imports it: the ONNX path never
    imports it at all. A closed pipe (``sbr identify F | head``) ends a streaming command quietly
    with status 0.
    """
    import os

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    app()
