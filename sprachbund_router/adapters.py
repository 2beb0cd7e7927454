"""Sprachbund adapters: LoRA weights (PEFT's on-disk format) applied to a shared base encoder.

An adapter directory holds what ``peft`` writes (``adapter_config.json`` and
``adapter_model.safetensors``), so it loads with peft or sentence-transformers'
``load_adapter`` too. The router needs neither: it reads the low-rank matrices with
safetensors and builds a model that shares every parameter of the already loaded base
except the adapted weight matrices (``W + (alpha / r) · B A``), so the base loads once and
each adapter costs only the matrices it changes.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import torch

from sprachbund_router.errors import CheckpointError
from sprachbund_router.pooling import layer_of

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def read_lora(directory: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """The adapter's config and tensors.

    Raises:
        CheckpointError: missing files, another adapter type, or options this loader does not
            apply (rsLoRA, DoRA, bias or extra trained modules).
    """
    cfg_path, weights = directory / ADAPTER_CONFIG, directory / ADAPTER_WEIGHTS
    if not cfg_path.is_file():
        raise CheckpointError(f"adapter directory {directory} has no {ADAPTER_CONFIG}")
    if not weights.is_file():
        found = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
        raise CheckpointError(f"adapter directory {directory} has no {ADAPTER_WEIGHTS} (found: {found}); "
                              "only safetensors adapters are loaded")
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{cfg_path} is corrupt: {err}") from err
    if cfg.get("peft_type") != "LORA":
        raise CheckpointError(f"{cfg_path}: peft_type {cfg.get('peft_type')!r} is not supported (LORA only)")
    for key in ("use_rslora", "use_dora", "fan_in_fan_out"):
        if cfg.get(key):
            raise CheckpointError(f"{cfg_path}: {key}=true is not supported")
    if cfg.get("bias", "none") != "none" or cfg.get("modules_to_save"):
        raise CheckpointError(f"{cfg_path}: adapters that train biases or whole modules are not supported")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{weights} is corrupt: {err}") from err
    return cfg, tensors


def _lora_pairs(tensors: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Module path (relative to the transformers model) -> (A, B)."""
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        for part in ("lora_A", "lora_B"):
            marker = f".{part}."
            if marker in key:
                module = key.split(marker)[0]
                for prefix in ("base_model.model.", "model."):
                    if module.startswith(prefix):
                        module = module[len(prefix):]
                        break
                pairs.setdefault(module, {})[part] = value
    out = {}
    for module, ab in pairs.items():
        if set(ab) != {"lora_A", "lora_B"}:
            raise CheckpointError(f"adapter tensors of {module} are incomplete (have {sorted(ab)})")
        out[module] = (ab["lora_A"], ab["lora_B"])
    return out


def apply_lora(base: torch.nn.Module, directory: Path) -> torch.nn.Module:
    """A model that shares ``base``'s parameters except the LoRA-adapted weights.

    Raises:
        CheckpointError: the adapter names modules the base lacks or has wrong shapes (an
            adapter trained on another base).
    """
    cfg, tensors = read_lora(directory)
    pairs = _lora_pairs(tensors)
    if not pairs:
        raise CheckpointError(f"{directory / ADAPTER_WEIGHTS} holds no LoRA matrices")
    scale = float(cfg.get("lora_alpha", cfg.get("r", 1))) / float(cfg.get("r", 1))
    # deep copy with every parameter and buffer mapped to itself: the structure is new, the storage shared
    memo = {id(t): t for t in [*base.parameters(), *base.buffers()]}
    model = copy.deepcopy(base, memo)
    modules = dict(model.named_modules())
    n_layers = int(getattr(base.config, "num_hidden_layers", 0) or 0)
    full = int(getattr(base.config, "truncated_from_layers", 0) or 0)
    dropped = 0
    for name, (a, b) in pairs.items():
        layer = layer_of(name)
        if full and layer is not None and n_layers <= layer < full:
            dropped += 1  # a layer the router's truncated base does not run (beyond the pooled layer): no effect
            continue
        target = modules.get(name)
        if target is None:
            for prefix in ("bert.", "roberta.", "model."):
                target = modules.get(name[len(prefix):]) if name.startswith(prefix) else None
                if target is not None:
                    break
        if target is None or not isinstance(getattr(target, "weight", None), torch.Tensor):
            raise CheckpointError(f"adapter {directory} adapts module {name!r}, which this base encoder lacks: "
                                  "it was trained on another base")
        w = target.weight
        if a.shape[1] != w.shape[1] or b.shape[0] != w.shape[0] or a.shape[0] != b.shape[1]:
            raise CheckpointError(f"adapter {directory}: {name} has A {tuple(a.shape)} and B {tuple(b.shape)} "
                                  f"for a weight of shape {tuple(w.shape)}: it was trained on another base")
        merged = w.detach() + scale * (b.to(w.device, w.dtype) @ a.to(w.device, w.dtype))
        target.weight = torch.nn.Parameter(merged, requires_grad=False)
    logger.info("adapter %s: %d matrices on the shared base (scale %.3g)%s", directory, len(pairs) - dropped, scale,
                f"; {dropped} for layers beyond the base's truncation skipped" if dropped else "")
    return model.eval()
