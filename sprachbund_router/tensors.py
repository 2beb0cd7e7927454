"""Numpy arrays in safetensors files, with JSON metadata (a leaf module: it imports no other
module of the package but :mod:`sprachbund_router.errors`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file

from sprachbund_router.errors import CheckpointError

__all__ = ["load_tensors", "save_tensors"]


def save_tensors(path: str | Path, tensors: dict[str, np.ndarray], metadata: dict[str, Any] | None = None) -> None:
    """Save numpy arrays as safetensors; ``metadata`` values are stored as JSON strings."""
    meta = {k: json.dumps(v, ensure_ascii=False) for k, v in (metadata or {}).items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path), metadata=meta)


def load_tensors(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load a safetensors file written by :func:`save_tensors`.

    Raises:
        CheckpointError: the file is missing or not a valid safetensors file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} not found")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="numpy") as handle:
            raw_meta = handle.metadata() or {}
        meta = {k: json.loads(v) for k, v in raw_meta.items()}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is corrupt: {err}") from err
    for name, value in tensors.items():
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            bad = int((~np.isfinite(value)).sum())
            raise CheckpointError(f"{path} is damaged: tensor {name!r} holds {bad} non-finite value(s) (NaN or inf)")
    return tensors, meta
