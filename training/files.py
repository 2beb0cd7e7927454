"""Placing built files (hard links where possible): defined in :mod:`sprachbund_router.staging`."""

from sprachbund_router.staging import link_or_copy, link_tree

__all__ = ["link_or_copy", "link_tree"]
