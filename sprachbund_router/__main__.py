"""``python -m sprachbund_router``: the ``sbr`` command line."""

from sprachbund_router.cli import main

main()
