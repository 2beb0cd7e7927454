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

__all__ = ["load_tensors", "map_tensor", "save_tensors"]


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


#: safetensors dtype names that :func:`map_tensor` maps, and their numpy types.
_MAPPABLE: dict[str, Any] = {"F16": np.float16, "F32": np.float32, "I8": np.int8}
_MAX_HEADER = 100_000_000


def map_tensor(path: str | Path, key: str) -> np.ndarray:
    """Tensor ``key`` of a safetensors file, memory-mapped read-only: nothing is read until rows are
    indexed, and only the pages of those rows become resident (a 250k-token embedding table
    costs the memory of the tokens a batch uses). Values are not checked here: callers check
    what they gather.

    Raises:
        CheckpointError: the file is missing, its header is malformed or lies about sizes, or the
            tensor is absent or of a type numpy cannot map.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} not found")
    size = path.stat().st_size
    try:
        with path.open("rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 0 < n <= min(_MAX_HEADER, size - 8):
                raise ValueError(f"header length {n} does not fit the file ({size} bytes)")
            header = json.loads(f.read(n))
        if not isinstance(header, dict) or not isinstance(header.get(key), dict):
            raise ValueError(f"no tensor {key!r}")
        entry = header[key]
        dtype, shape, (begin, end) = _MAPPABLE.get(entry.get("dtype")), entry.get("shape"), entry.get("data_offsets")
        if dtype is None:
            raise ValueError(f"tensor {key!r} has dtype {entry.get('dtype')!r}; only F16, F32 and I8 are mapped")
        if not (isinstance(shape, list) and shape and all(isinstance(d, int) and d > 0 for d in shape)):
            raise ValueError(f"tensor {key!r} has shape {shape!r}")
        count = int(np.prod(shape))
        if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin
                and end - begin == count * np.dtype(dtype).itemsize and 8 + n + end <= size):
            raise ValueError(f"tensor {key!r} has data offsets {entry.get('data_offsets')!r} that do not match its "
                             f"shape {shape} or the file's {size} bytes")
        return np.memmap(path, dtype=dtype, mode="r", offset=8 + n + begin, shape=tuple(shape))
    except (OSError, ValueError, TypeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is corrupt: {err}") from err
