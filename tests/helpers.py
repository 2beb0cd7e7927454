"""Small helpers the tests share."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sprachbund_router.config import CONFIG_NAME


def flat(res: Any) -> str:
    """A CLI result's output with rich's box drawing and line wrapping removed."""
    return " ".join(res.output.replace("│", " ").split())


def edit_config(router_dir: Path, change: Callable[[dict], Any]) -> None:
    """Change a router folder's config file in place."""
    cfg = json.loads((router_dir / CONFIG_NAME).read_text())
    change(cfg)
    (router_dir / CONFIG_NAME).write_text(json.dumps(cfg))
