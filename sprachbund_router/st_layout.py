"""Encoder folders that sentence-transformers loads exactly as the router runs them.

Every encoder folder the project writes has this layout: the router directories built by ``sbr
train build`` / ``sbr setup`` and the Hub repositories of ``sbr export hub``.
``write_st_folder(src, dst, pooling, spec)`` writes a standard sentence-transformers layout:
``modules.json`` (Transformer -> Pooling with the router's mode -> Normalize),
``sentence_bert_config.json`` (the router's ``max_length``), ``1_Pooling/config.json`` and
``config_sentence_transformers.json`` (the router's text prefix as the default prompt, cosine
similarity). When the router pools a hidden state before the last layer, the encoder is written
truncated to that layer (its config says so), so the last layer sentence-transformers reads *is*
the router's layer. The unused pooler is dropped from the weights and the config, so a load
reports nothing missing. ``SentenceTransformer(dst).encode(texts)`` then equals the router
encoder's vectors (checked in the tests at cosine >= 0.9999). A truncated config records
``truncated_from_layers``, so a LoRA adapter trained on the full base can still be applied (its
matrices for the dropped layers cannot change the pooled layer and are skipped).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from sprachbund_router.config import EncoderSpec, PoolingConfig
from sprachbund_router.pooling import layer_of, resolve_layer
from sprachbund_router.staging import link_or_copy

logger = logging.getLogger(__name__)

#: Files of a source folder that are rewritten (not linked) or belong to other layouts.
SKIP_FILES = ("config.json", "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json", "README.md")
#: Model types whose transformers class takes ``add_pooling_layer``.
POOLER_MODELS = ("bert", "xlm-roberta", "roberta", "camembert", "electra")


def _weight_files(src: Path) -> list[Path]:
    """The encoder's weight files: ``model.safetensors`` or the shards its index names (other
    safetensors files in the folder, such as a saved MLM head, are not the encoder)."""
    if (src / "model.safetensors").is_file():
        return [src / "model.safetensors"]
    index = src / "model.safetensors.index.json"
    if index.is_file():
        return [src / name for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    raise FileNotFoundError(f"{src} has no model.safetensors (nor a sharded index)")


def _write_json(path: Path, obj: Any) -> None:
    """Write JSON as a new file (a hard link to a cached model's file is replaced, never written through)."""
    path.unlink(missing_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def write_st_folder(src: Path, dst: Path, pooling: PoolingConfig, spec: EncoderSpec) -> dict[str, Any]:
    """Write ``src`` (a transformers encoder folder) to ``dst`` in sentence-transformers' layout.

    ``dst`` may be ``src`` (the folder is rewritten in place). Other files of ``src`` (tokenizer,
    provenance such as ``conversion.json``) are linked beside the weights.

    Returns:
        what was written: layers kept, pooling, max_seq_length, prompt.
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    dst.mkdir(parents=True, exist_ok=True)
    config = json.loads((src / "config.json").read_text())
    n_layers = int(config["num_hidden_layers"])
    layer = resolve_layer(pooling.layer, n_layers)
    tensors = {}
    n_tensors = 0
    for weights in _weight_files(src):
        with safe_open(str(weights), framework="pt") as f:
            for key in f.keys():
                n_tensors += 1
                at = layer_of(key)
                if key.startswith("pooler.") or ".pooler." in key or (at is not None and at >= layer):
                    continue
                tensors[key] = f.get_tensor(key)
    in_place = src.resolve() == dst.resolve()
    if not in_place or len(tensors) < n_tensors:  # in place with nothing to drop: the weights file stays as it is
        old = _weight_files(src) if in_place else []
        tmp = dst / "model.safetensors.partial"
        save_file(tensors, str(tmp), metadata={"format": "pt"})
        for f in old:  # shards of an in-place rewrite (a hard-linked file elsewhere keeps its own name)
            f.unlink()
        (dst / "model.safetensors.index.json").unlink(missing_ok=True)
        tmp.replace(dst / "model.safetensors")
    if layer != n_layers:
        config["num_hidden_layers"] = layer
        config["truncated_from_layers"] = int(config.get("truncated_from_layers", n_layers))
        logger.info("%s: truncated to %d of %d layers (the router pools hidden_states[%d])", dst, layer, n_layers, layer)
    config.pop("add_pooling_layer", None)
    _write_json(dst / "config.json", config)
    if not in_place:
        for f in src.iterdir():  # tokenizer, provenance...; not the weights, not folders (onnx/ is exported apart)
            if f.is_file() and f.name not in SKIP_FILES and not f.name.startswith("model") and not (dst / f.name).exists():
                link_or_copy(f, dst / f.name)
    write_st_modules(dst, pooling, spec, config)
    return {"layers": layer, "of_layers": n_layers, "pooling": pooling.mode, "max_seq_length": spec.max_length,
            "prompt": spec.text_prefix}


def write_st_modules(dst: Path, pooling: PoolingConfig, spec: EncoderSpec, config: dict[str, Any]) -> None:
    """sentence-transformers' module files (``modules.json``, ``sentence_bert_config.json``,
    pooling, normalisation, prompts) for an encoder with transformers ``config``."""
    dim = int(config["hidden_size"])
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    _write_json(dst / "modules.json", modules)
    st_config: dict[str, Any] = {"max_seq_length": spec.max_length, "do_lower_case": False}
    if config.get("model_type") in POOLER_MODELS:  # the pooler is not part of a sentence vector: not built at all
        st_config["model_args"] = {"add_pooling_layer": False}
    _write_json(dst / "sentence_bert_config.json", st_config)
    (dst / "1_Pooling").mkdir(exist_ok=True)
    _write_json(dst / "1_Pooling" / "config.json", {
        "word_embedding_dimension": dim, "pooling_mode_cls_token": pooling.mode == "cls",
        "pooling_mode_mean_tokens": pooling.mode == "mean", "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False, "include_prompt": True,
    })
    (dst / "2_Normalize").mkdir(exist_ok=True)
    # both sides get the router's prefix: encode_query and encode_document give the router's vectors
    prompts = {"query": spec.text_prefix, "document": spec.text_prefix} if spec.text_prefix else {}
    _write_json(dst / "config_sentence_transformers.json", {
        "prompts": prompts, "default_prompt_name": "query" if prompts else None, "similarity_fn_name": "cosine",
        "model_type": "SentenceTransformer",
    })


def write_st_adapter_folder(src: Path, dst: Path, base_dir: Path, base_ref: str, pooling: PoolingConfig,
                            spec: EncoderSpec) -> dict[str, Any]:
    """A LoRA adapter as a small sentence-transformers repository on top of its base encoder.

    ``src``: the adapter folder (``adapter_config.json``, ``adapter_model.safetensors``);
    ``base_dir``: its base encoder folder as written by :func:`write_st_folder` (possibly truncated);
    ``base_ref``: what the adapter's ``base_model_name_or_path`` becomes (the base encoder's Hub repo).
    The adapter's matrices for layers the base no longer has (beyond the pooled layer: they cannot
    change the vector) are dropped, so peft loads it with nothing unexpected. The base's tokenizer
    and ``config.json`` and sentence-transformers' module files are written beside it, so ``SentenceTransformer(dst)``
    loads base + adapter (with ``peft`` installed) and gives the router's adapter vectors.
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    from sprachbund_router.adapters import ADAPTER_CONFIG, ADAPTER_WEIGHTS

    dst.mkdir(parents=True, exist_ok=True)
    base_config = json.loads((base_dir / "config.json").read_text())
    kept = int(base_config["num_hidden_layers"])
    tensors, dropped = {}, 0
    with safe_open(str(src / ADAPTER_WEIGHTS), framework="pt") as f:
        for key in f.keys():
            at = layer_of(key)
            if at is not None and at >= kept:
                dropped += 1
                continue
            tensors[key] = f.get_tensor(key)
    save_file(tensors, str(dst / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    adapter_config = json.loads((src / ADAPTER_CONFIG).read_text())
    adapter_config["base_model_name_or_path"] = base_ref
    _write_json(dst / ADAPTER_CONFIG, adapter_config)
    for f in base_dir.iterdir():  # the tokenizer (sentence-transformers reads it from the adapter's folder)
        if f.is_file() and f.name.startswith(("tokenizer", "special_tokens", "sentencepiece")):
            link_or_copy(f, dst / f.name)
    if (src / "training_metrics.json").is_file():
        link_or_copy(src / "training_metrics.json", dst / "training_metrics.json")
    _write_json(dst / "config.json", base_config)  # transformers' processor lookup reads the repo's own config
    write_st_modules(dst, pooling, spec, base_config)
    return {"layers": kept, "dropped_matrices": dropped, "base": base_ref, "bytes": (dst / ADAPTER_WEIGHTS).stat().st_size}
