"""Encoder folders that sentence-transformers loads exactly as the router runs them.

``write_st_folder(src, dst, pooling, spec)`` writes a standard sentence-transformers layout:
``modules.json`` (Transformer -> Pooling with the router's mode -> Normalize),
``sentence_bert_config.json`` (the router's ``max_length``), ``1_Pooling/config.json`` and
``config_sentence_transformers.json`` (the router's text prefix as the default prompt, cosine
similarity). When the router pools a hidden state before the last layer, the encoder is written
truncated to that layer (its config says so), so the last layer sentence-transformers reads *is*
the router's layer. The unused pooler is dropped from the weights and the config, so a load
reports nothing missing. ``SentenceTransformer(dst).encode(texts)`` then equals the router
encoder's vectors (checked in the tests at cosine >= 0.9999).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from sprachbund_router.config import EncoderSpec, PoolingConfig
from sprachbund_router.pooling import resolve_layer

logger = logging.getLogger(__name__)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "sentencepiece.bpe.model")
#: Model types whose transformers class takes ``add_pooling_layer``.
POOLER_MODELS = ("bert", "xlm-roberta", "roberta", "camembert", "electra")
_LAYER = re.compile(r"(?:^|\.)(?:encoder\.)?layer\.(\d+)\.")


def _weight_files(src: Path) -> list[Path]:
    """The encoder's weight files: ``model.safetensors`` or the shards its index names (other
    safetensors files in the folder, such as a saved MLM head, are not the encoder)."""
    if (src / "model.safetensors").is_file():
        return [src / "model.safetensors"]
    index = src / "model.safetensors.index.json"
    if index.is_file():
        return [src / name for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    raise FileNotFoundError(f"{src} has no model.safetensors (nor a sharded index)")


def write_st_folder(src: Path, dst: Path, pooling: PoolingConfig, spec: EncoderSpec) -> dict[str, Any]:
    """Write ``src`` (a transformers encoder folder) to ``dst`` in sentence-transformers' layout.

    Returns:
        what was written: layers kept, pooling, max_seq_length, prompt.
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    from training.files import link_or_copy

    dst.mkdir(parents=True, exist_ok=True)
    config = json.loads((src / "config.json").read_text())
    n_layers = int(config["num_hidden_layers"])
    layer = resolve_layer(pooling.layer, n_layers)
    tensors = {}
    for weights in _weight_files(src):
        with safe_open(str(weights), framework="pt") as f:
            for key in f.keys():
                m = _LAYER.search(key)
                if key.startswith("pooler.") or ".pooler." in key or (m and int(m.group(1)) >= layer):
                    continue
                tensors[key] = f.get_tensor(key)
    save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
    if layer != n_layers:
        config["num_hidden_layers"] = layer
        logger.info("%s: truncated to %d of %d layers (the router pools hidden_states[%d])", dst, layer, n_layers, layer)
    config.pop("add_pooling_layer", None)
    (dst / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            link_or_copy(src / name, dst / name)
    dim = int(config["hidden_size"])
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (dst / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
    st_config: dict[str, Any] = {"max_seq_length": spec.max_length, "do_lower_case": False}
    if config.get("model_type") in POOLER_MODELS:  # the pooler is not part of a sentence vector: not built at all
        st_config["model_args"] = {"add_pooling_layer": False}
    (dst / "sentence_bert_config.json").write_text(json.dumps(st_config, indent=2) + "\n")
    (dst / "1_Pooling").mkdir(exist_ok=True)
    (dst / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": dim, "pooling_mode_cls_token": pooling.mode == "cls",
        "pooling_mode_mean_tokens": pooling.mode == "mean", "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False, "include_prompt": True,
    }, indent=2) + "\n")
    (dst / "2_Normalize").mkdir(exist_ok=True)
    prompts = {"query": spec.text_prefix} if spec.text_prefix else {}
    (dst / "config_sentence_transformers.json").write_text(json.dumps({
        "prompts": prompts, "default_prompt_name": "query" if prompts else None, "similarity_fn_name": "cosine",
        "model_type": "SentenceTransformer",
    }, indent=2) + "\n")
    return {"layers": layer, "of_layers": n_layers, "pooling": pooling.mode, "max_seq_length": spec.max_length,
            "prompt": spec.text_prefix}
