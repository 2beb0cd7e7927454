"""Checks on what a router directory holds: typed config values and paths confined to the folder.

A router directory (local, or a Hub snapshot) is untrusted input. Every path it names must
be relative, free of ``..`` and ``~``, and must resolve (symbolic links followed) inside the
directory; in huggingface_hub's cache, a snapshot's files are links into the same repository's
``blobs`` folder, which is allowed too. Every config value is checked for its type and range,
and the error names the key (``encoders.sb1.max_length``) and what was expected.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from sprachbund_router.errors import CheckpointError


def _typename(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an int", float: "a number",
            type(None): "null"}.get(type(value), type(value).__name__)


def expect(value: Any, kind: type | tuple[type, ...], key: str, what: str) -> Any:
    """Return ``value`` if it is a ``kind`` (bools are never ints or numbers), else raise naming ``key``.

    Raises:
        ValueError: with ``key``, ``what`` was expected and what was found.
    """
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        ok = False
    else:
        ok = isinstance(value, kinds)
    if not ok:
        raise ValueError(f"{key} must be {what}, got {_typename(value)} {value!r:.60}")
    return value


def expect_str_map(value: Any, key: str) -> dict[str, str]:
    """A JSON object whose values are non-empty strings."""
    expect(value, dict, key, "an object")
    for k, v in value.items():
        expect(v, str, f"{key}.{k}", "a string")
        if not v:
            raise ValueError(f"{key}.{k} must be a non-empty string")
    return value


def expect_number(value: Any, key: str, low: float | None = None, high: float | None = None) -> float:
    """An int or float within ``[low, high]``."""
    expect(value, (int, float), key, "a number")
    if not math.isfinite(value):
        raise ValueError(f"{key} must be a finite number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{key} must be between {low} and {high}, got {value!r}")
    return float(value)


def dataclass_from_dict(cls: type, value: Any, key: str, nested: Mapping[str, type] | None = None) -> Any:
    """``cls(**value)`` for a dataclass ``cls``, with errors that name ``key`` (unknown fields, wrong
    types, values its ``__post_init__`` refuses). ``nested``: field -> dataclass its value is built into."""
    import dataclasses

    expect(value, dict, key, "an object")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ValueError(f"{key} has unknown field(s) {unknown} (known: {sorted(known)})")
    kwargs = {k: dataclass_from_dict(nested[k], v, f"{key}.{k}") if nested and k in nested and v is not None else v
              for k, v in value.items()}
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"{key}: {err}") from err
    except ValueError as err:
        msg = str(err)
        short = key.split(".")[0] + "."
        raise ValueError(msg if msg.startswith((key, short)) else f"{key}: {msg}") from err


def relative_path(value: Any, key: str) -> str:
    """A path stored in a router config: relative, no ``..``, no ``~``, no drive or backslash.

    Raises:
        ValueError: naming ``key`` and why the path is refused.
    """
    expect(value, str, key, "a relative path (string)")
    if not value or not value.strip():
        raise ValueError(f"{key} must be a non-empty relative path")
    if value.startswith(("/", "~")) or PureWindowsPath(value).drive or "\\" in value or PurePosixPath(value).is_absolute():
        raise ValueError(f"{key} = {value!r} is refused: paths in a router config must be relative to the router directory")
    if ".." in PurePosixPath(value).parts:
        raise ValueError(f"{key} = {value!r} is refused: '..' would leave the router directory")
    if "\x00" in value:
        raise ValueError(f"{key} holds a NUL character")
    return value


def allowed_roots(directory: Path) -> list[Path]:
    """Where files of ``directory`` may really live: the directory itself and, for a
    huggingface_hub snapshot (``models--org--name/snapshots/<commit>``), its repository's blobs."""
    root = directory.resolve()
    roots = [root]
    if root.parent.name == "snapshots" and root.parent.parent.name.startswith(("models--", "datasets--", "spaces--")):
        roots.append(root.parent.parent / "blobs")
    return roots


def _within(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == r or path.is_relative_to(r) for r in roots)


def confined(directory: Path, rel: str, key: str) -> Path:
    """``directory / rel`` after checking it stays inside ``directory`` (links followed).

    The path and, for a folder, every file under it are checked, so a link inside an encoder
    folder cannot point at a file elsewhere.

    Raises:
        CheckpointError: naming ``key`` (never what exists outside the directory).
    """
    try:
        relative_path(rel, key)
    except ValueError as err:
        raise CheckpointError(str(err)) from None
    roots = allowed_roots(directory)
    path = directory / rel
    if not _within(path.resolve(), roots):
        raise CheckpointError(f"{key} = {rel!r} is refused: it leads outside the router directory through a link")
    if path.is_dir():
        for base, dirs, files in os.walk(path, followlinks=False):
            for name in [*dirs, *files]:
                entry = Path(base) / name
                if entry.is_symlink() and not _within(entry.resolve(), roots):
                    shown = entry.relative_to(directory).as_posix()
                    raise CheckpointError(f"{key}: {shown!r} is a link leading outside the router directory; refused")
    return path


def writable_inside(target: Path, rel: str, key: str) -> Path:
    """``target / rel`` for a writer, refused unless it stays inside ``target``."""
    try:
        relative_path(rel, key)
    except ValueError as err:
        raise CheckpointError(str(err)) from None
    path = target / rel
    if not _within(path.resolve(), [target.resolve()]):
        raise CheckpointError(f"{key} = {rel!r} is refused: writing it would leave {target}")
    return path
