"""Where sprachbund-router keeps what it builds (outside any source checkout)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$SPRACHBUND_ROUTER_CACHE`` or ``~/.cache/sprachbund-router``."""
    env = os.environ.get("SPRACHBUND_ROUTER_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sprachbund-router"


def default_router_dir() -> Path:
    """Directory of the embedded default router (built by ``sbr setup``)."""
    return cache_root() / "default-router"


def data_dir() -> Path:
    """Directory of downloaded registry packages and built corpora."""
    return cache_root() / "data"
