"""Top-layer encoders: a shared base whose top transformer layers are replaced by trained ones.

A specialised encoder trained the paper's way on a CPU budget (``training.top_layers``) keeps the
base's embeddings and lower layers and trains only the layers from ``first_layer`` up. Its folder
holds just what differs from the base:

- ``top_layers.json``: ``{"format": "top-layers", "first_layer": 8, "num_layers": 12, ...}``;
- ``top_layers.safetensors``: each trained layer's tensors, named ``<i>.<parameter>`` for layer
  ``first_layer + i`` (the layer's own ``state_dict`` names).

The router loads the base once and builds each top-layer encoder around it: every parameter
below ``first_layer`` (the token-embedding table included, 80% of the weights) is the base's own
storage, so an extra encoder costs only its top layers' memory. Like LoRA adapters
(:mod:`sprachbund_router.adapters`) such an encoder names its base with ``adapter_base`` in the
router config and is served through the base's vector space, in which it was trained.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sprachbund_router.errors import CheckpointError

if TYPE_CHECKING:  # torch is imported where a model is built: the ONNX backends run without it
    import torch

logger = logging.getLogger(__name__)

TOP_LAYERS_CONFIG = "top_layers.json"
TOP_LAYERS_WEIGHTS = "top_layers.safetensors"
TOP_LAYERS_FORMAT = "top-layers"


def is_top_layers(directory: Path) -> bool:
    """Whether ``directory`` holds a top-layer encoder (else, for an adapter, a LoRA one)."""
    return (directory / TOP_LAYERS_CONFIG).is_file()


def layer_stack(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The encoder's list of transformer layers (``encoder.layer`` of BERT / XLM-R)."""
    import torch

    n = int(model.config.num_hidden_layers)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n and name.endswith(("layer", "layers")):
            return module
    raise ValueError(f"{type(model).__name__} has no list of {n} transformer layers")


def read_top_layers(directory: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The folder's settings and tensors, checked (finite values, names of layers it declares).

    Raises:
        CheckpointError: missing or corrupt files, another format, non-finite weights.
    """
    from sprachbund_router.checkpoint import read_json_object
    from sprachbund_router.tensors import load_tensors

    cfg_file, weights = directory / TOP_LAYERS_CONFIG, directory / TOP_LAYERS_WEIGHTS
    if not cfg_file.is_file():
        raise CheckpointError(f"top-layer encoder {directory} has no {TOP_LAYERS_CONFIG}")
    if not weights.is_file():
        raise CheckpointError(f"top-layer encoder {directory} has no {TOP_LAYERS_WEIGHTS} (only safetensors are loaded)")
    cfg = read_json_object(cfg_file)
    if cfg.get("format") != TOP_LAYERS_FORMAT:
        raise CheckpointError(f"{cfg_file}: format {cfg.get('format')!r} is not {TOP_LAYERS_FORMAT!r}")
    for key in ("first_layer", "num_layers"):
        if not isinstance(cfg.get(key), int) or isinstance(cfg.get(key), bool) or cfg[key] < 0:
            raise CheckpointError(f"{cfg_file}: {key} must be a non-negative int, got {cfg.get(key)!r}")
    if cfg["first_layer"] >= cfg["num_layers"]:
        raise CheckpointError(f"{cfg_file}: first_layer {cfg['first_layer']} is not below num_layers {cfg['num_layers']}")
    tensors, _ = load_tensors(weights)
    n_top = cfg["num_layers"] - cfg["first_layer"]
    for name, value in tensors.items():
        index = name.split(".", 1)[0]
        if not index.isdigit() or int(index) >= n_top:
            raise CheckpointError(f"{weights}: tensor {name!r} is not a parameter of layers 0..{n_top - 1} above first_layer")
        if not np.isfinite(value).all():
            raise CheckpointError(f"{weights} is damaged: tensor {name!r} holds NaN or inf")
    return cfg, tensors


def apply_top_layers(base: torch.nn.Module, directory: Path) -> torch.nn.Module:
    """A model that shares every parameter of ``base`` below the folder's ``first_layer`` and
    runs the folder's trained layers from there up.

    Raises:
        CheckpointError: the folder was trained for a base of another depth or shapes.
    """
    import torch

    cfg, tensors = read_top_layers(directory)
    stack = layer_stack(base)
    full = int(getattr(base.config, "truncated_from_layers", 0) or 0) or len(stack)
    if full != cfg["num_layers"] or len(stack) != cfg["num_layers"]:
        raise CheckpointError(f"top-layer encoder {directory} was trained on a base of {cfg['num_layers']} layers; "
                              f"this base runs {len(stack)} of {full}")
    memo = {id(t): t for t in [*base.parameters(), *base.buffers()]}
    model = copy.deepcopy(base, memo)  # a new structure on the same storage
    layers = layer_stack(model)
    first = cfg["first_layer"]
    for i in range(first, len(layers)):
        own = copy.deepcopy(layers[i])  # fresh storage for the layers this encoder trained
        state = {k.split(".", 1)[1]: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in tensors.items()
                 if k.split(".", 1)[0] == str(i - first)}
        try:
            own.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise CheckpointError(f"top-layer encoder {directory}: layer {i} does not fit this base: {str(err)[:300]}") from None
        layers[i] = own.to(next(layers[i].parameters()).device)
    logger.info("top-layer encoder %s: layers %d-%d trained, layers below shared with the base", directory, first,
                len(layers) - 1)
    return model.eval()


def write_top_layers(directory: Path, state: Mapping[str, np.ndarray], first_layer: int, num_layers: int,
                     **meta: Any) -> Path:
    """Write a top-layer encoder folder from a trained stack's ``state`` (``<i>.<parameter>`` names)."""
    from sprachbund_router.tensors import save_tensors

    directory.mkdir(parents=True, exist_ok=True)
    save_tensors(directory / TOP_LAYERS_WEIGHTS, {k: np.asarray(v, dtype=np.float32) for k, v in state.items()},
                 {"first_layer": first_layer})
    cfg = {"format": TOP_LAYERS_FORMAT, "first_layer": first_layer, "num_layers": num_layers, **meta}
    (directory / TOP_LAYERS_CONFIG).write_text(json.dumps(cfg, indent=1, ensure_ascii=False) + "\n")
    return directory


def write_merged(base_dir: Path, top_dir: Path, out: Path) -> Path:
    """A full transformers encoder folder: ``base_dir``'s weights with ``top_dir``'s trained layers
    in place (for users of plain transformers or sentence-transformers; the router itself loads the
    top layers onto its base). Config and tokenizer files are copied from the base."""
    import shutil

    from safetensors.numpy import load_file, save_file

    from sprachbund_router.pooling import layer_of

    cfg, tensors = read_top_layers(top_dir)
    files = sorted(base_dir.glob("*.safetensors"))
    if len(files) != 1:
        raise CheckpointError(f"{base_dir} must hold one .safetensors weights file to merge into, found {len(files)}")
    weights = load_file(str(files[0]))
    first, replaced = cfg["first_layer"], 0
    for key in list(weights):
        at = layer_of(key)
        if at is None or at < first:
            continue
        suffix = key.split(f"layer.{at}.", 1)[1]
        name = f"{at - first}.{suffix}"
        if name not in tensors:
            raise CheckpointError(f"{top_dir} lacks {name!r} for the base's {key!r}")
        if tensors[name].shape != weights[key].shape:
            raise CheckpointError(f"{top_dir}: {name!r} has shape {tensors[name].shape}, the base's {key!r} {weights[key].shape}")
        weights[key] = tensors[name].astype(weights[key].dtype)
        replaced += 1
    if replaced != len(tensors):
        raise CheckpointError(f"{top_dir} holds {len(tensors)} tensors but {replaced} matched the base's layers")
    out.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    for f in base_dir.iterdir():
        if f.is_file() and f.suffix != ".safetensors" and not f.is_symlink():
            shutil.copyfile(f, out / f.name)
    return out
