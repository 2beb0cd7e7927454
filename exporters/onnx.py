"""Export sprachbund encoders to ONNX (fp32 and dynamic int8) and check them against PyTorch.

Like setfit's ``exporters/onnx.py``, body and pooling are wrapped in one module so the graph
takes ``input_ids`` and ``attention_mask`` (dynamic batch and sequence axes) and returns the
L2-normalised pooled vector of the router's configured ``hidden_states`` layer: the runtime
needs onnxruntime and the tokenizer only. Layers above the pooled one are dropped from the
graph. At export:

* the graph is fused with onnxruntime's transformer optimiser (Attention, EmbedLayerNormalization,
  Gelu); SkipLayerNormalization and BiasGelu are left unfused, and the runtime session keeps
  them off (``SLOW_CPU_FUSIONS``), since their CPU kernels are slower than the plain ops: 1.4x
  faster int8 inference on the default router than with every fusion;
* fp32 parity: cosine between ONNX and PyTorch vectors on real multilingual sentences must
  reach ``min_cosine`` (0.999) or the export fails;
* int8 (onnxruntime dynamic per-channel quantisation of MatMul weights): the top-1 retrieval accuracy on
  held-out translated pairs is measured for PyTorch and int8; an int8 file whose drop exceeds
  ``max_int8_drop`` points is deleted and reported as refused.

Results go to ``<encoder>/onnx/export.json``, which the model cards read.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sprachbund_router.backend import ONNX_DIR, ONNX_EXPORT_INFO, ONNX_FILES
from sprachbund_router.config import EncoderSpec, PoolingConfig, RouterConfig
from sprachbund_router.encoder import SentenceEncoder
from sprachbund_router.onnx_encoder import SLOW_CPU_FUSIONS, OnnxSentenceEncoder
from sprachbund_router.pooling import pool, resolve_layer
from sprachbund_router.validation import confined
from training.metrics import bidirectional_accuracy

logger = logging.getLogger(__name__)


class PooledEncoder(nn.Module):
    """Encoder body + pooling + L2 normalisation, as one module for export."""

    def __init__(self, model: nn.Module, layer: int, mode: str) -> None:
        super().__init__()
        n_layers = model.config.num_hidden_layers
        self.layer = resolve_layer(layer, n_layers)
        self.mode = mode
        model = copy.deepcopy(model)
        if hasattr(model, "set_attn_implementation"):
            # plain attention ops export to the pattern onnxruntime fuses into its Attention kernel
            model.set_attn_implementation("eager")
        body = getattr(getattr(model, "encoder", None), "layer", None)
        if isinstance(body, nn.ModuleList) and self.layer < n_layers:
            model.encoder.layer = body[: self.layer]  # layers above the pooled one do not matter
            model.config.num_hidden_layers = self.layer
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        hidden = out.hidden_states[self.layer] if self.layer < len(out.hidden_states) else out.last_hidden_state
        return nn.functional.normalize(pool(hidden, attention_mask, self.mode), dim=-1)  # type: ignore[arg-type]


def export_fp32(encoder: SentenceEncoder, out_file: Path, opset: int = 17) -> Path:
    """Write the pooled encoder as ONNX with dynamic batch and sequence axes."""
    wrapper = PooledEncoder(encoder.model, encoder.layer, encoder.pooling.mode).eval()
    sample = encoder.tokenize(["Hallo Welt, dies ist ein Beispiel.", "猫"])
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            (sample["input_ids"], sample["attention_mask"]),
            str(out_file),
            input_names=["input_ids", "attention_mask"],
            output_names=["sentence_embedding"],
            dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
                          "sentence_embedding": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    return out_file


def fuse_transformer_ops(onnx_file: Path, config: Any) -> dict[str, int]:
    """Fuse attention, embedding LayerNorm and GELU with onnxruntime's transformer optimiser (in
    place), leaving the fusions in ``SLOW_CPU_FUSIONS`` out. Returns the fused-operator counts; a
    graph it cannot fuse is left as it is."""
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    options = FusionOptions("bert")
    options.enable_skip_layer_norm = options.enable_bias_skip_layer_norm = False
    options.enable_bias_gelu = False
    try:
        opt = optimizer.optimize_model(str(onnx_file), model_type="bert", num_heads=config.num_attention_heads,
                                       hidden_size=config.hidden_size, optimization_options=options)
    except Exception as err:
        logger.warning("onnxruntime's transformer optimiser failed (%s); keeping the unfused graph", err)
        return {}
    stats = {k: int(v) for k, v in opt.get_fused_operator_statistics().items() if v}
    opt.save_model_to_file(str(onnx_file))
    return stats


def quantize_int8(fp32_file: Path, out_file: Path, exclude: Sequence[str] = ()) -> Path:
    """Dynamic int8 quantisation of the MatMul weights, one scale per output channel (onnxruntime);
    the nodes named in ``exclude`` stay in fp32.

    Per-channel scales matter here: with one scale per tensor the default router lost 1.9
    top-1 points on held-out pairs, per channel 0.9 (measured with `sbr export onnx`). Fused
    Attention nodes are quantised too (onnxruntime's QAttention).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32_file), str(out_file), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Attention"],
                     per_channel=True, nodes_to_exclude=list(exclude),
                     extra_options={"DefaultTensorType": 1})  # 1 = FLOAT, for fused ops' outputs
    return out_file


def export_encoder(
    encoder_dir: Path,
    pooling: PoolingConfig,
    spec: EncoderSpec,
    parity_texts: Sequence[str],
    eval_pairs: Sequence[tuple[str, str]],
    *,
    min_cosine: float = 0.999,
    max_int8_drop: float = 1.0,
) -> dict[str, Any]:
    """Export one encoder directory (fp32 + int8) and write ``onnx/export.json``.

    Raises:
        RuntimeError: fp32 parity below ``min_cosine``.
    """
    encoder = SentenceEncoder.from_pretrained(encoder_dir, pooling, spec)
    # everything is written and checked in a partial folder, moved to onnx/ only when complete
    partial = f"{ONNX_DIR}.partial"
    onnx_dir = encoder_dir / partial
    shutil.rmtree(onnx_dir, ignore_errors=True)
    fp32 = export_fp32(encoder, onnx_dir / ONNX_FILES["onnx"])
    fused = fuse_transformer_ops(fp32, encoder.model.config)
    info: dict[str, Any] = {
        "layer": pooling.layer, "layer_resolved": encoder.layer, "num_layers": encoder.num_layers, "mode": pooling.mode,
        "dim": encoder.dim, "opset": 17, "text_prefix": spec.text_prefix, "max_length": spec.max_length,
        "fused_operators": fused, "disabled_onnxruntime_fusions": list(SLOW_CPU_FUSIONS),
        "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    info_file = onnx_dir / ONNX_EXPORT_INFO
    info_file.write_text(json.dumps(info, indent=1) + "\n")  # the ONNX backend reads it; completed below
    # both checks run the ONNX files through the runtime backend, batching and session options included
    ref = encoder.encode(list(parity_texts))
    got = OnnxSentenceEncoder(encoder_dir, pooling, spec, "onnx", onnx_dir=partial).encode(list(parity_texts))
    cos = (ref * got).sum(axis=1)
    if cos.min() < min_cosine:
        shutil.rmtree(onnx_dir, ignore_errors=True)
        raise RuntimeError(f"ONNX fp32 export of {encoder_dir} disagrees with PyTorch: min cosine {cos.min():.5f} < {min_cosine}")
    info["fp32"] = {"file": f"{ONNX_DIR}/{ONNX_FILES['onnx']}", "parity_min_cosine": round(float(cos.min()), 6),
                    "parity_mean_cosine": round(float(cos.mean()), 6), "parity_texts": len(parity_texts)}
    int8 = quantize_int8(fp32, onnx_dir / ONNX_FILES["onnx-int8"])
    if eval_pairs:
        xs, ens = [p[0] for p in eval_pairs], [p[1] for p in eval_pairs]
        torch_acc = bidirectional_accuracy(encoder.encode(xs), encoder.encode(ens))["mean"]
        int8_encoder = OnnxSentenceEncoder(encoder_dir, pooling, spec, "onnx-int8", onnx_dir=partial)
        int8_acc = bidirectional_accuracy(int8_encoder.encode(xs), int8_encoder.encode(ens))["mean"]
        drop = 100 * (torch_acc - int8_acc)
        info["retrieval_eval"] = {"pairs": len(eval_pairs), "metric": "top-1 accuracy (%), mean of both directions",
                                  "torch_fp32": round(100 * torch_acc, 2), "onnx_int8": round(100 * int8_acc, 2),
                                  "int8_drop_points": round(drop, 2), "max_int8_drop": max_int8_drop}
        if drop > max_int8_drop:
            int8.unlink()
            info["int8"] = {"refused": f"retrieval drop {drop:.2f} points > {max_int8_drop}"}
            logger.warning("int8 export of %s refused: drop %.2f points", encoder_dir, drop)
        else:
            info["int8"] = {"file": f"{ONNX_DIR}/{ONNX_FILES['onnx-int8']}"}
    (onnx_dir / ONNX_EXPORT_INFO).write_text(json.dumps(info, indent=1) + "\n")
    final = encoder_dir / ONNX_DIR
    old = encoder_dir / f"{ONNX_DIR}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    onnx_dir.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    logger.info("exported %s: parity %.5f, int8 %s", encoder_dir, cos.min(), info.get("int8"))
    return info


def export_router(
    router_dir: Path, parity_texts: Sequence[str], eval_pairs: Sequence[tuple[str, str]],
    min_cosine: float = 0.999, max_int8_drop: float = 1.0, include_baselines: bool = False,
) -> dict[str, dict[str, Any]]:
    """Export the local encoders a router serves (each distinct directory once); baseline
    encoders kept for evaluation only with ``include_baselines``."""
    config = RouterConfig.load(router_dir)
    served = {*config.sprachbund_encoders.values(), config.shared_encoder, config.fallback_encoder}
    done: dict[Path, dict[str, Any]] = {}
    out = {}
    for name, spec in config.encoders.items():
        if name not in served and not include_baselines:
            continue
        if spec.path is None:
            logger.warning("encoder %s lives on the Hub (%s); export it from its own directory", name, spec.repo_id)
            continue
        if spec.adapter_base is not None:  # a LoRA file on the shared base: the torch backend runs it
            logger.warning("encoder %s is a LoRA adapter on %s: not exported to ONNX (the torch backend serves it)",
                           name, spec.adapter_base)
            continue
        # the same containment as loading: an encoder folder linked from outside the router is never written into
        path = confined(router_dir, spec.path, f"encoders.{name}.path").resolve()
        if path not in done:
            done[path] = export_encoder(path, config.pooling, spec, parity_texts, eval_pairs,
                                        min_cosine=min_cosine, max_int8_drop=max_int8_drop)
        out[name] = done[path]
    return out
