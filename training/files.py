"""Built files: placing them (hard links where possible, defined in :mod:`sprachbund_router.staging`)
and checking that a file shipped with the package is the one that was recorded."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from sprachbund_router.staging import link_or_copy, link_tree

__all__ = ["file_sha256", "link_or_copy", "link_tree", "matches_checksum", "shipped_record"]

logger = logging.getLogger(__name__)


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


def shipped_record(artifacts: Path, name: str, key: str, what: str) -> dict[str, Any] | None:
    """The record (``NAME.json``) of the shipped ``NAME.safetensors`` when it was made for ``key``
    and the file still has the recorded sha256; else None, logged under ``what`` (the build then
    computes the artifact itself). The caller checks that the local encoder fits it."""
    shipped, meta_file = artifacts / f"{name}.safetensors", artifacts / f"{name}.json"
    if not (shipped.is_file() and meta_file.is_file()):
        return None
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        logger.warning("%s: %s is unreadable (%s); computing it here", what, meta_file, err)
        return None
    if not isinstance(meta, dict) or meta.get("key") != key:
        logger.info("%s: the shipped %s was made from other inputs; computing it here", what, shipped.name)
        return None
    if not matches_checksum(shipped, meta.get("sha256")):
        logger.warning("%s: the shipped %s does not match the sha256 recorded in %s (changed after it was shipped); "
                       "computing it here", what, shipped.name, meta_file.name)
        return None
    return meta
