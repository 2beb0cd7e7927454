"""Checks on encoder directories that need no deep-learning framework."""

from __future__ import annotations

import json
from pathlib import Path

from sprachbund_router.errors import CheckpointError

ONNX_DIR = "onnx"
ONNX_FILES = {"onnx": "model.onnx", "onnx-int8": "model_qint8.onnx"}
ONNX_EXPORT_INFO = "export.json"


def check_encoder_dir(path: Path, backend: str = "torch") -> None:
    """Raise :class:`CheckpointError` unless ``path`` holds what ``backend`` needs.

    torch: ``config.json`` and ``.safetensors`` weights (pickled weights are refused).
    onnx / onnx-int8: ``tokenizer.json`` and the ONNX file written by ``sbr export onnx``.
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
        return
    if backend not in ONNX_FILES:
        raise ValueError(f"unknown backend {backend!r}")
    onnx_file = path / ONNX_DIR / ONNX_FILES[backend]
    if not onnx_file.is_file():
        info = path / ONNX_DIR / ONNX_EXPORT_INFO
        refused = json.loads(info.read_text()).get("int8", {}).get("refused") if info.is_file() else None
        if backend == "onnx-int8" and refused:
            raise CheckpointError(f"{path} has no int8 variant: it was refused at export ({refused}); use backend='onnx'")
        raise CheckpointError(f"{onnx_file} not found: export the router first (`sbr export onnx ROUTER_DIR`)")
    if not (path / "tokenizer.json").is_file():
        raise CheckpointError(f"encoder directory {path} has no tokenizer.json (needed by the ONNX backend)")


def read_onnx_export_info(path: Path) -> dict:
    """The ``onnx/export.json`` written at export (pooling layer, mode, parity figures)."""
    info = path / ONNX_DIR / ONNX_EXPORT_INFO
    if not info.is_file():
        raise CheckpointError(f"{info} not found: export the router first (`sbr export onnx ROUTER_DIR`)")
    try:
        return json.loads(info.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{info} is corrupt: {err}") from err
