"""Placing built files: hard links where the filesystem allows, copies elsewhere.

Encoders are hundreds of megabytes; routers, Hub dry runs and cache layouts share them by hard
link so building one costs no disk space.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (copy across filesystems), creating parent folders."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def link_tree(src: Path, dst: Path, replace: bool = False) -> None:
    """Link (or copy) every file below ``src`` into ``dst``; ``replace`` empties ``dst`` first."""
    if replace:
        shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.rglob("*"):
        if f.is_file():
            link_or_copy(f, dst / f.relative_to(src))
