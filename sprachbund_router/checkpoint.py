"""Checks on encoder directories that need no deep-learning framework."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from sprachbund_router.backend import LEGACY_ONNX_FILES, ONNX_DIR, ONNX_EXPORT_INFO, ONNX_FILES, ONNX_TOKEN_EMBEDDINGS
from sprachbund_router.errors import CheckpointError


def onnx_file(path: Path, backend: str, onnx_dir: str = ONNX_DIR) -> Path:
    """The ONNX graph of ``backend`` in encoder directory ``path`` (the legacy name if only that exists)."""
    current = path / onnx_dir / ONNX_FILES[backend]
    legacy = path / onnx_dir / LEGACY_ONNX_FILES[backend]
    if not current.is_file() and legacy.is_file():
        import logging

        logging.getLogger(__name__).warning("%s uses the pre-rename name %s; re-export with `sbr export onnx` to get %s",
                                            path, legacy.name, current.name)
        return legacy
    return current


def check_encoder_dir(path: Path, backend: str = "torch", onnx_dir: str = ONNX_DIR, base: Path | None = None) -> Path | None:
    """Raise :class:`CheckpointError` unless ``path`` holds what ``backend`` needs.

    torch: ``config.json`` and ``.safetensors`` weights (pickled weights are refused).
    onnx / onnx-int8: ``tokenizer.json`` and the ONNX file written by ``sbr export onnx``; for a
    top-layer encoder (``base``: its base's folder) the tokenizer is the base's.

    Returns:
        the ONNX graph to load for the ONNX backends (None for torch).
    """
    if not path.is_dir():
        raise CheckpointError(f"encoder directory {path} does not exist")
    if backend == "torch":
        if not (path / "config.json").is_file():
            raise CheckpointError(f"encoder directory {path} has no config.json")
        if not any(path.glob("*.safetensors")):
            found = sorted(p.name for p in path.iterdir())
            raise CheckpointError(
                f"encoder directory {path} has no .safetensors weights (found: {found}); "
                "only safetensors weights are loaded, convert pickled weights first"
            )
        return None
    if backend not in ONNX_FILES:
        raise ValueError(f"unknown backend {backend!r}")
    graph = onnx_file(path, backend, onnx_dir)
    if not graph.is_file():
        info = path / onnx_dir / ONNX_EXPORT_INFO
        refused = json.loads(info.read_text()).get("int8", {}).get("refused") if info.is_file() else None
        if backend == "onnx-int8" and refused:
            raise CheckpointError(f"{path} has no int8 variant: it was refused at export ({refused}); use backend='onnx'")
        raise CheckpointError(f"{graph} not found: export the router first (`sbr export onnx ROUTER_DIR`)")
    if not ((base or path) / "tokenizer.json").is_file():
        raise CheckpointError(f"encoder directory {base or path} has no tokenizer.json (needed by the ONNX backend)")
    return graph


#: Model types whose position ids start after the padding index (two positions are not usable).
_POSITION_OFFSET = {"xlm-roberta": 2, "roberta": 2, "camembert": 2, "xlm-roberta-xl": 2}


def _non_finite(value: Any, key: str = "") -> tuple[str, float] | None:
    """The dotted key and value of the first NaN or infinity in a parsed JSON value, else None."""
    if isinstance(value, float) and not math.isfinite(value):
        return key or "the value", value
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = ((f"[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for k, v in items:
        sub = f"{key}{k}" if str(k).startswith("[") else (f"{key}.{k}" if key else str(k))
        if (found := _non_finite(v, sub)) is not None:
            return found
    return None


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``.

    Raises:
        CheckpointError: the file is not valid JSON (NaN and infinities included) or holds
            something other than an object.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is corrupt (not valid JSON): {err}") from err
    except RecursionError:
        raise CheckpointError(f"{path} is corrupt: nested too deeply to be a configuration") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is corrupt: expected a JSON object")
    try:
        bad = _non_finite(data)
    except RecursionError:
        raise CheckpointError(f"{path} is corrupt: nested too deeply to be a configuration") from None
    if bad is not None:  # NaN / Infinity: not JSON, and no figure or setting of ours is one
        raise CheckpointError(f"{path} is corrupt: {bad[0]} must be a finite number, got {bad[1]} "
                              "(NaN and infinities are refused)")
    return data


def _usable_positions(cfg: dict[str, Any]) -> int | None:
    positions = cfg.get("max_position_embeddings")
    if not isinstance(positions, int):
        return None
    return positions - _POSITION_OFFSET.get(str(cfg.get("model_type")), 0)


def usable_positions(path: Path) -> int | None:
    """Longest input (tokens) the encoder in ``path`` accepts, from its ``config.json`` (None if unknown)."""
    try:
        return _usable_positions(read_json_object(path / "config.json"))
    except (OSError, CheckpointError):
        return None


def check_encoder_settings(path: Path, spec: Any, pooling: Any, name: str = "") -> None:
    """Refuse settings the encoder in ``path`` cannot honour, before any weight is loaded.

    Reads ``config.json`` only: the pooling layer must exist and ``max_length`` must fit the
    model's position embeddings.

    Raises:
        CheckpointError: naming the config key, the value and the model's limit.
    """
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        return  # the ONNX backend may run without it; check_encoder_dir decides what is required
    cfg = read_json_object(cfg_file)
    key = f"encoders.{name}." if name else ""
    layers = cfg.get("num_hidden_layers")
    if isinstance(layers, int) and not -(layers + 1) <= pooling.layer <= layers:
        raise CheckpointError(
            f"pooling.layer = {pooling.layer} is out of range for encoder {name or path} with {layers} layers "
            f"(hidden_states has {layers + 1} entries: 0 = embeddings ... {layers} = last; -1 = last)"
        )
    usable = _usable_positions(cfg)
    if usable is not None and spec.max_length > usable:
        raise CheckpointError(f"{key}max_length = {spec.max_length} exceeds the {usable} positions of encoder "
                              f"{name or path} ({cfg.get('model_type')}); use at most {usable}")


def read_onnx_export_info(path: Path, onnx_dir: str = ONNX_DIR) -> dict:
    """The ``onnx/export.json`` written at export (pooling layer, mode, parity figures)."""
    info = path / onnx_dir / ONNX_EXPORT_INFO
    if not info.is_file():
        raise CheckpointError(f"{info} not found: export the router first (`sbr export onnx ROUTER_DIR`)")
    data = read_json_object(info)
    missing = [k for k in ("mode", "layer_resolved", "num_layers", "dim") if k not in data]
    if missing:
        raise CheckpointError(f"{info} is corrupt: it lacks {missing}; export again (`sbr export onnx ROUTER_DIR`)")
    return data


#: fp32 parity (ONNX against PyTorch, cosine) an export must have recorded for ``auto`` to serve it.
AUTO_MIN_PARITY = 0.9995
#: ``auto`` serves int8 only where its check resolved a drop of at most this many top-1 points on
#: every set: the bound fp32 ONNX keeps against PyTorch, so the default never trades accuracy
#: for int8's speed (``--backend onnx-int8`` serves any graph that passed its own, looser, check).
AUTO_INT8_MAX_DROP = 0.1


def onnx_unready(path: Path, backend: str, base: Path | None = None) -> str | None:
    """Why encoder directory ``path`` cannot serve ``backend`` (``onnx`` or ``onnx-int8``) under
    ``auto``, or None when it can (``base``: a top-layer encoder's base folder, which must be ready
    too): the files must be there and ``onnx/export.json`` must record
    fp32 parity of at least :data:`AUTO_MIN_PARITY` (and for int8 a plan whose check resolved a
    drop of at most :data:`AUTO_INT8_MAX_DROP`)."""
    try:
        check_encoder_dir(path, backend, base=base)
        info = read_onnx_export_info(path)
    except CheckpointError as err:
        return str(err)
    parity = info.get("fp32", {}).get("parity_min_cosine") if isinstance(info.get("fp32"), dict) else None
    if not isinstance(parity, (int, float)) or parity < AUTO_MIN_PARITY:
        return f"{path / ONNX_DIR / ONNX_EXPORT_INFO} records no fp32 parity of at least {AUTO_MIN_PARITY} (got {parity})"
    table = (base or path) / ONNX_DIR / ONNX_TOKEN_EMBEDDINGS  # a top-layer encoder gathers from its base's table
    if info.get("inputs") == "inputs_embeds" and not table.is_file():
        return f"{table} is missing"
    if base is not None and (why := onnx_unready(base, backend)) is not None:
        return why
    if backend == "onnx-int8":
        int8 = info.get("int8") if isinstance(info.get("int8"), dict) else {}
        if "plan" not in int8 or int8.get("unchecked") or int8.get("unverified") or "refused" in int8:
            return f"the int8 graph of {path} was {'refused' if 'refused' in int8 else 'not verified'} at export"
        drop, resolved = int8.get("max_drop"), int8.get("resolved") is True
        if not resolved or not isinstance(drop, (int, float)) or drop > AUTO_INT8_MAX_DROP:
            measured = f"worst drop {drop:.2f}" if isinstance(drop, (int, float)) else "no drop recorded"
            return (f"the int8 graph of {path} is not shown to lose at most {AUTO_INT8_MAX_DROP} top-1 points "
                    f"(its check: {measured}{'' if resolved else ', not resolved'})")
    return None
