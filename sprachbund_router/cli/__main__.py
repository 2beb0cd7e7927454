"""``python -m sprachbund_router.cli`` (e.g. under ``accelerate launch -m``)."""

from sprachbund_router.cli import main

main()
