"""Built files: placing them (hard links where possible, defined in :mod:`sprachbund_router.staging`)
and checking that a file shipped with the package is the one that was recorded."""

from __future__ import annotations

import hashlib
from pathlib import Path

from sprachbund_router.staging import link_or_copy, link_tree

__all__ = ["file_sha256", "link_or_copy", "link_tree", "matches_checksum"]


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def matches_checksum(path: Path, recorded: object) -> bool:
    """Whether ``path`` has the recorded sha256 (a missing record never matches)."""
    return isinstance(recorded, str) and path.is_file() and file_sha256(path) == recorded
