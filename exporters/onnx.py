"""Export sprachbund encoders to ONNX (fp32 and dynamic int8) and check them against PyTorch.

Like setfit's ``exporters/onnx.py``, body and pooling are wrapped in one module so the graph
takes ``inputs_embeds`` and ``attention_mask`` (dynamic batch and sequence axes) and returns the
L2-normalised pooled vector of the router's configured ``hidden_states`` layer: the runtime
needs onnxruntime and the tokenizer only. Layers above the pooled one are dropped from the
graph. The token-embedding table is written beside the graph as float16 rows
(``token_embeddings.safetensors``), which the runtime memory-maps and gathers per batch: the
250k-row table of multilingual-e5-small is 384 MB of its 470 MB of float32 weights, and float16
rows keep every dev-half vector at cosine >= 0.9999997 to float32 ones (int8 rows with a
per-row scale fell to 0.995 on some texts). At export:

* the graph is fused with onnxruntime's transformer optimiser (Attention, EmbedLayerNormalization,
  Gelu); SkipLayerNormalization and BiasGelu are left unfused, and the runtime session keeps
  them off (``SLOW_CPU_FUSIONS``), since their CPU kernels are slower than the plain ops: 1.4x
  faster int8 inference on the default router than with every fusion;
* fp32 parity: cosine between ONNX and PyTorch vectors on real multilingual sentences must
  reach ``min_cosine`` (0.9995) or the export fails;
* int8 (onnxruntime dynamic per-channel quantisation of MatMul weights): the router's own
  served vectors (space and retrieval scoring included) are scored with the int8 backend and
  with PyTorch on every check set: the held-out sources' dev halves (``sbr export onnx`` uses
  them when they are built; a test half is never used for this choice) or given pairs. Plans
  keeping more layers in fp32 (``INT8_PLANS``) are tried in turn until one loses at most
  ``max_int8_drop`` (0.5) top-1 points on every set; when none does, the int8 file is deleted
  and the refusal recorded.

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

import numpy as np
import torch
from torch import nn

import sprachbund_router
from sprachbund_router.backend import INT8_PLANS, ONNX_DIR, ONNX_EXPORT_INFO, ONNX_FILES, ONNX_TOKEN_EMBEDDINGS
from sprachbund_router.config import EncoderSpec, PoolingConfig, RouterConfig
from sprachbund_router.encoder import SentenceEncoder
from sprachbund_router.errors import CheckpointError
from sprachbund_router.onnx_encoder import SLOW_CPU_FUSIONS, OnnxSentenceEncoder
from sprachbund_router.pooling import pool, resolve_layer
from sprachbund_router.tensors import save_tensors
from sprachbund_router.top_layers import is_top_layers
from sprachbund_router.validation import confined

logger = logging.getLogger(__name__)


class PooledEncoder(nn.Module):
    """Encoder body (from token embeddings on) + pooling + L2 normalisation, as one module for export."""

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

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # position ids count from the first token (padding is on the right), as they do from input_ids
        out = self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, output_hidden_states=True)
        hidden = out.hidden_states[self.layer] if self.layer < len(out.hidden_states) else out.last_hidden_state
        return nn.functional.normalize(pool(hidden, attention_mask, self.mode), dim=-1)  # type: ignore[arg-type]


def export_token_embeddings(encoder: SentenceEncoder, out_file: Path) -> Path:
    """Write the encoder's token-embedding table as float16 rows (``weight``), checked finite
    once here, so that loading never has to read the whole table."""
    table = encoder.model.get_input_embeddings().weight.detach().to(torch.float16).cpu().numpy()
    bad = ~np.isfinite(table).all(axis=1)
    if bad.any():
        raise CheckpointError(f"the token embeddings of {encoder.model.name_or_path} hold NaN or inf (or values beyond "
                              f"float16) in {int(bad.sum())} row(s), e.g. {np.flatnonzero(bad)[:5].tolist()}")
    save_tensors(out_file, {"weight": table}, {"dtype": "float16", "rows": int(table.shape[0])})
    return out_file


def export_fp32(encoder: SentenceEncoder, out_file: Path, opset: int = 17, table: bool = True) -> Path:
    """Write the pooled encoder as ONNX taking ``inputs_embeds``, with dynamic batch and sequence
    axes, and its token-embedding table beside it (:func:`export_token_embeddings`; not with
    ``table=False``: a top-layer encoder gathers from its base's table)."""
    wrapper = PooledEncoder(encoder.model, encoder.layer, encoder.pooling.mode).eval()
    sample = encoder.tokenize(["Hallo Welt, dies ist ein Beispiel.", "猫"])
    out_file.parent.mkdir(parents=True, exist_ok=True)
    if table:
        export_token_embeddings(encoder, out_file.parent / ONNX_TOKEN_EMBEDDINGS)
    with torch.no_grad():
        embeds = encoder.model.get_input_embeddings()(sample["input_ids"])
        torch.onnx.export(
            wrapper,
            (embeds, sample["attention_mask"]),
            str(out_file),
            input_names=["inputs_embeds", "attention_mask"],
            output_names=["sentence_embedding"],
            dynamic_axes={"inputs_embeds": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
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
    *,
    min_cosine: float = 0.9995,
) -> dict[str, Any]:
    """Export one encoder directory to fp32 ONNX (parity-checked) plus the first int8 plan, and
    write ``onnx/export.json``; :func:`export_router` then checks the int8 variant on the
    router's served vectors and settles it.

    Raises:
        RuntimeError: fp32 parity below ``min_cosine``.
    """
    require_export_extra()
    encoder = SentenceEncoder.from_pretrained(encoder_dir, pooling, spec)
    return _export_staged(encoder, encoder_dir, pooling, spec, parity_texts, min_cosine)


def _export_staged(encoder: SentenceEncoder, encoder_dir: Path, pooling: PoolingConfig, spec: EncoderSpec,
                   parity_texts: Sequence[str], min_cosine: float, base: OnnxSentenceEncoder | None = None) -> dict[str, Any]:
    """:func:`_export_into` a partial folder, moved to ``onnx/`` only when complete; a failed
    export leaves no partial folder."""
    partial = f"{ONNX_DIR}.partial"
    shutil.rmtree(encoder_dir / partial, ignore_errors=True)
    try:
        return _export_into(encoder, encoder_dir, pooling, spec, parity_texts, min_cosine, partial, base=base)
    except BaseException:
        shutil.rmtree(encoder_dir / partial, ignore_errors=True)
        raise


def export_top_layers(
    encoder_dir: Path,
    base_dir: Path,
    pooling: PoolingConfig,
    spec: EncoderSpec,
    base_spec: EncoderSpec,
    parity_texts: Sequence[str],
    *,
    min_cosine: float = 0.9995,
) -> dict[str, Any]:
    """Export a top-layer encoder (:mod:`sprachbund_router.top_layers`) into its own folder: the
    graph of its base with its trained top layers, checked against PyTorch like any encoder; it
    takes the base's token embeddings, so its base must be exported first."""
    from sprachbund_router.top_layers import apply_top_layers

    require_export_extra()
    base = SentenceEncoder.from_pretrained(base_dir, pooling, base_spec)
    encoder = SentenceEncoder(apply_top_layers(base.model, encoder_dir), base.tokenizer, pooling,
                              text_prefix=spec.text_prefix, max_length=spec.max_length)
    onnx_base = OnnxSentenceEncoder(base_dir, pooling, base_spec, "onnx")
    return _export_staged(encoder, encoder_dir, pooling, spec, parity_texts, min_cosine, base=onnx_base)


def require_export_extra() -> None:
    """Refuse to start an export without the ``[export]`` extra (before any work, naming it).

    Raises:
        CheckpointError: onnx, onnxscript or onnxruntime's quantisation cannot be imported.
    """
    missing = []
    for module in ("onnx", "onnxscript", "onnxruntime.quantization"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise CheckpointError(f"ONNX export needs {', '.join(missing)}: pip install 'sprachbund-router[export]'")


def _export_into(encoder: SentenceEncoder, encoder_dir: Path, pooling: PoolingConfig, spec: EncoderSpec,
                 parity_texts: Sequence[str], min_cosine: float, partial: str,
                 base: OnnxSentenceEncoder | None = None) -> dict[str, Any]:
    onnx_dir = encoder_dir / partial
    fp32 = export_fp32(encoder, onnx_dir / ONNX_FILES["onnx"], table=base is None)
    fused = fuse_transformer_ops(fp32, encoder.model.config)
    info: dict[str, Any] = {
        "layer": pooling.layer, "layer_resolved": encoder.layer, "num_layers": encoder.num_layers, "mode": pooling.mode,
        "dim": encoder.dim, "inputs": "inputs_embeds", "opset": 17, "text_prefix": spec.text_prefix, "max_length": spec.max_length,
        "fused_operators": fused, "disabled_onnxruntime_fusions": list(SLOW_CPU_FUSIONS),
        "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **({"token_embeddings": "the base's (adapter_base)"} if base is not None else {}),
    }
    info_file = onnx_dir / ONNX_EXPORT_INFO
    info_file.write_text(json.dumps(info, indent=1) + "\n")  # the ONNX backend reads it; completed below
    # the check runs the ONNX file through the runtime backend, batching and session options included
    ref = encoder.encode(list(parity_texts))
    got = OnnxSentenceEncoder(encoder_dir, pooling, spec, "onnx", onnx_dir=partial, base=base).encode(list(parity_texts))
    cos = (ref * got).sum(axis=1)
    if cos.min() < min_cosine:
        shutil.rmtree(onnx_dir, ignore_errors=True)
        raise RuntimeError(f"ONNX fp32 export of {encoder_dir} disagrees with PyTorch: min cosine {cos.min():.5f} < {min_cosine}")
    info["fp32"] = {"file": f"{ONNX_DIR}/{ONNX_FILES['onnx']}", "parity_min_cosine": round(float(cos.min()), 6),
                    "parity_mean_cosine": round(float(cos.mean()), 6), "parity_texts": len(parity_texts)}
    name, pattern = INT8_PLANS[0]
    quantize_int8(fp32, onnx_dir / ONNX_FILES["onnx-int8"], fp32_nodes(fp32, pattern))
    info["int8"] = {"file": f"{ONNX_DIR}/{ONNX_FILES['onnx-int8']}", "plan": name, "unchecked": True}
    (onnx_dir / ONNX_EXPORT_INFO).write_text(json.dumps(info, indent=1) + "\n")
    final = encoder_dir / ONNX_DIR
    old = encoder_dir / f"{ONNX_DIR}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    onnx_dir.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    logger.info("exported %s: parity %.5f", encoder_dir, cos.min())
    return info


def fp32_nodes(onnx_file: Path, pattern: str | None) -> list[str]:
    """Names of the quantisable nodes of ``onnx_file`` matching ``pattern`` (kept in fp32)."""
    if pattern is None:
        return []
    import re

    import onnx

    graph = onnx.load(str(onnx_file), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type in ("MatMul", "Attention") and re.search(pattern, n.name)]


def check_sets_from_pairs(pairs: Sequence[tuple[str, str]], name: str = "pairs") -> Any:
    """A one-set check (``training.loso.Data``) of (text, English) pairs of unknown language: the
    router identifies each text, as it would for a user."""
    from training.loso import Data

    return Data({name: {"train": {}, "dev": {None: list(pairs)}, "test": {}}}, {name: "interface"}, {})  # type: ignore[dict-item]


def _verdict(result: dict[str, Any], bound: float, recorded: bool) -> tuple[bool, bool]:
    """(accepted, resolved) for one plan's ``compare`` result. The check resolves the bound when the
    set that decides (the one with the largest drop) has a standard error of at most half of it
    (and at least what one changed row would give, ``100 / rows``). A
    resolved check accepts a plan that loses at most ``bound`` on every set. An unresolved one
    cannot accept a plan on its own: it keeps the ``recorded`` plan (chosen on a check that
    resolved it) unless some set shows a loss above the bound by more than two standard errors,
    and it accepts no other plan."""
    sets = result["sources"]
    worst = max(sets.values(), key=lambda r: r["drop"]) if sets else {}
    # a check where no row changed has a standard error of 0, yet one changed row would move it by
    # 100 / rows points (0.83 on the 120 bundled sentences): that is the least error it can claim
    floor = 100 / worst["rows"] if worst.get("rows") else 0.0
    resolved = max(worst.get("drop_se", 0.0), floor) <= bound / 2
    if resolved:
        return result["max_drop"] <= bound, True
    significant = any(r["drop"] - 2 * r.get("drop_se", 0.0) > bound for r in sets.values())
    return recorded and not significant, False


def plan_names(plans: Sequence[tuple[str, str | None]] = INT8_PLANS) -> list[str]:
    """The int8 plans' names, loosest first."""
    return [name for name, _ in plans]


def settle_int8(router_dir: Path, encoder_dirs: Sequence[Path], check: Any, split: str = "dev",
                max_int8_drop: float = 0.5, plans: Sequence[tuple[str, str | None]] = INT8_PLANS,
                recorded_plan: str | None = None) -> dict[str, Any]:
    """Keep the first int8 plan whose router loses at most ``max_int8_drop`` top-1 points on every
    set of ``check`` (``training.loso.Data``: the held-out sources' dev halves, or pairs), scored on
    the router's served vectors (space and retrieval scoring included) against its PyTorch
    backend; refuse int8 when none does. Writes the outcome into each encoder's ``export.json``.

    ``recorded_plan`` (the plan a router's build config records, chosen on the held-out sources'
    dev halves) is where the search starts: no looser plan is tried. A check set too small to
    resolve the bound (:func:`_verdict`) is reported as such: it can refuse the recorded plan (a
    significant loss) but never loosen it, and without a recorded plan it leaves the int8 graph
    unverified (``auto`` does not serve it)."""
    from sprachbund_router.router import SprachbundRouter
    from training.source_eval import ServedVectors, compare, served_hits

    if isinstance(check, (list, tuple)):
        check = check_sets_from_pairs(check)
    names = plan_names(plans)
    if recorded_plan is not None and recorded_plan not in names:
        raise ValueError(f"unknown int8 plan {recorded_plan!r}; the plans are {names}")
    first = names.index(recorded_plan) if recorded_plan is not None else 0
    reference = SprachbundRouter.from_pretrained(router_dir, backend="torch")
    scoring = reference.config.retrieval_scoring
    ref = served_hits(ServedVectors(reference, check, split), scoring)
    del reference
    tried: list[dict[str, Any]] = []
    accepted: dict[str, Any] | None = None
    kept: dict[Path, list[str]] = {}
    for index, (name, pattern) in enumerate(plans):
        if index < first:
            continue
        kept = _write_int8(encoder_dirs, name, pattern)
        try:
            router = SprachbundRouter.from_pretrained(router_dir, backend="onnx-int8")
            got = served_hits(ServedVectors(router, check, split), scoring)
        except CheckpointError as err:  # e.g. a LoRA sprachbund: the ONNX backends cannot run it
            tried.append({"plan": name, "error": str(err)})
            break
        result = compare(ref, got)
        ok, resolved = _verdict(result, max_int8_drop, recorded_plan is not None)
        tried.append({"plan": name, "fp32_nodes": max(len(v) for v in kept.values()), "resolved": resolved, **result})
        worst = result["sources"].get(result["worst_source"], {})
        logger.info("int8 plan %r: worst drop %.2f points (%s, standard error %.2f), mean %.2f%s", name, result["max_drop"],
                    result["worst_source"], worst.get("drop_se", float("nan")), result["mean_drop"],
                    "" if resolved else f"; the check cannot resolve {max_int8_drop} points")
        if ok:
            accepted = tried[-1]
            break
        if not resolved and recorded_plan is None:
            break  # a check this small verifies nothing: no tighter plan would be verified either
    outcome = {"split": split, "metric": "top-1 to English (%), served vectors, mean over languages, per set",
               "scoring": scoring, "max_int8_drop": max_int8_drop, "recorded_plan": recorded_plan, "plans_tried": tried}
    _record_int8(encoder_dirs, outcome, accepted, kept, split)
    return outcome


def _write_int8(encoder_dirs: Sequence[Path], name: str, pattern: str | None) -> dict[Path, list[str]]:
    """Quantise each encoder with plan ``name`` (unless its int8 graph already holds that plan, as
    the one export wrote does); returns each encoder's nodes kept in fp32."""
    kept = {}
    for d in encoder_dirs:
        graph, int8 = d / ONNX_DIR / ONNX_FILES["onnx"], d / ONNX_DIR / ONNX_FILES["onnx-int8"]
        kept[d] = fp32_nodes(graph, pattern)
        recorded = json.loads((d / ONNX_DIR / ONNX_EXPORT_INFO).read_text()).get("int8", {})
        if int8.is_file() and recorded.get("plan") == name:
            continue
        tmp = d / ONNX_DIR / f"{ONNX_FILES['onnx-int8']}.tmp"
        quantize_int8(graph, tmp, kept[d])
        tmp.replace(int8)
    return kept


def _record_int8(encoder_dirs: Sequence[Path], outcome: dict[str, Any], accepted: dict[str, Any] | None,
                 kept: dict[Path, list[str]], split: str) -> None:
    """Write the int8 outcome into each encoder's ``export.json`` (deleting a refused graph)."""
    tried, bound = outcome["plans_tried"], outcome["max_int8_drop"]
    for d in encoder_dirs:
        info_file = d / ONNX_DIR / ONNX_EXPORT_INFO
        info = json.loads(info_file.read_text())
        info.pop("retrieval_eval", None)
        if accepted is not None:
            info["int8"] = {"file": f"{ONNX_DIR}/{ONNX_FILES['onnx-int8']}", "plan": accepted["plan"],
                            "max_drop": accepted["max_drop"], "resolved": accepted["resolved"],
                            "fp32_nodes": kept[d]}  # the accepted plan is the last one written
            if not accepted["resolved"]:
                info["int8"]["check"] = (f"kept as recorded: the {split} check cannot resolve {bound} points "
                                         "and shows no significant loss")
        elif tried and not tried[-1].get("resolved", True) and outcome["recorded_plan"] is None:
            info["int8"] = {"file": f"{ONNX_DIR}/{ONNX_FILES['onnx-int8']}", "plan": tried[-1]["plan"], "unverified":
                            f"the {split} check cannot resolve {bound} points (a standard error above half of it) "
                            "and the router records no plan; --backend onnx-int8 serves it, auto does not"}
            logger.warning("int8 export of %s left unverified: %s", d, info["int8"]["unverified"])
        else:
            (d / ONNX_DIR / ONNX_FILES["onnx-int8"]).unlink(missing_ok=True)
            last = tried[-1] if tried else {}
            why = last.get("error") or (f"every plan lost more than {bound} top-1 points on some {split} set "
                                        f"(best: {min(t.get('max_drop', 100.0) for t in tried):.2f})")
            info["int8"] = {"refused": why}
            logger.warning("int8 export of %s refused: %s", d, why)
        info["int8_check"] = outcome
        info_file.write_text(json.dumps(info, indent=1) + "\n")


def default_check_sets(router_dir: Path, rows_per_language: int = 30, held_out: bool = True) -> tuple[list[str], Any, str]:
    """Parity texts (the bundled example: 120 real sentences, 12 languages) and the int8 check
    sets: the held-out sources' dev halves (at most ``rows_per_language`` rows per source and
    language) when they are built and ``held_out``, else the bundled example's pairs; and a description."""
    from sprachbund_router.paths import data_dir
    from training.held_out_sources import MANIFEST
    from training.loso import Data

    examples = Path(sprachbund_router.__file__).resolve().parent / "examples"
    parity = (examples / "queries.txt").read_text(encoding="utf-8").splitlines()
    corpus = data_dir() / "corpus"
    manifest = corpus / "sources" / MANIFEST
    if held_out and manifest.is_file():
        cfg = RouterConfig.load(router_dir)
        sources = sorted(json.loads(manifest.read_text())["sources"])
        check = Data.load(corpus, sources, cfg.languages, cfg.language_to_sprachbund,
                          {"train": 0, "dev": rows_per_language, "test": 0})
        return parity, check, f"the dev halves of {len(sources)} held-out sources"
    english = (examples / "corpus.txt").read_text(encoding="utf-8").splitlines()
    return parity, list(zip(parity, english)), "the bundled example (no held-out sources built)"


def export_router(
    router_dir: Path, parity_texts: Sequence[str], check: Any,
    min_cosine: float = 0.9995, max_int8_drop: float = 0.5, include_baselines: bool = False, split: str = "dev",
    recorded_plan: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Export the local encoders a router serves (each distinct directory once; baseline encoders
    kept for evaluation only with ``include_baselines``), then settle the int8 variant
    (:func:`settle_int8`) on ``check``: a ``training.loso.Data`` of held-out sets (their ``split``
    rows) or a sequence of (text, English) pairs (empty: int8 files are kept unchecked), starting
    from ``recorded_plan`` (default: the plan the router's ``build_config.json`` records, see
    :func:`recorded_int8_plan`)."""
    require_export_extra()
    config = RouterConfig.load(router_dir)
    served = config.served_encoders()
    served |= {config.encoders[e].adapter_base for e in served if config.encoders[e].adapter_base}  # type: ignore[misc]
    done: dict[Path, dict[str, Any]] = {}
    out = {}
    # the same containment as loading: an encoder folder linked from outside the router is never written into
    folder = {name: confined(router_dir, spec.path, f"encoders.{name}.path").resolve()
              for name, spec in config.encoders.items() if spec.path is not None}
    for name, spec in sorted(config.encoders.items(), key=lambda item: item[1].adapter_base is not None):  # bases first
        if name not in served and not include_baselines:
            continue
        if spec.path is None:
            logger.warning("encoder %s lives on the Hub (%s); export it from its own directory", name, spec.repo_id)
            continue
        path = folder[name]
        if spec.adapter_base is not None and not is_top_layers(path):  # a LoRA file on the shared base: torch runs it
            logger.warning("encoder %s is a LoRA adapter on %s: not exported to ONNX (the torch backend serves it)",
                           name, spec.adapter_base)
            continue
        if spec.adapter_base is not None and folder.get(spec.adapter_base) not in done:
            raise CheckpointError(f"encoder {name!r} has top layers on {spec.adapter_base!r}, which is not exported "
                                  "from this router's folder")
        if path not in done and spec.adapter_base is not None:
            done[path] = export_top_layers(path, folder[spec.adapter_base], config.pooling, spec,
                                           config.encoders[spec.adapter_base], parity_texts, min_cosine=min_cosine)
        elif path not in done:
            done[path] = export_encoder(path, config.pooling, spec, parity_texts, min_cosine=min_cosine)
        out[name] = path
    if isinstance(check, (list, tuple)):
        check = check_sets_from_pairs(check) if check else None
    if check is not None and done:
        plan = recorded_plan if recorded_plan is not None else recorded_int8_plan(router_dir)
        settle_int8(router_dir, list(done), check, split, max_int8_drop, recorded_plan=plan)
    return {name: json.loads((path / ONNX_DIR / ONNX_EXPORT_INFO).read_text()) for name, path in out.items()}



def recorded_int8_plan(router_dir: Path) -> str | None:
    """The int8 plan a router's build recorded (``int8_plan`` in its ``build_config.json``, chosen
    on the held-out sources' dev halves for the default preset), or None."""
    from sprachbund_router.checkpoint import read_json_object

    file = confined(router_dir, "build_config.json", "build_config.json")
    if not file.is_file():
        return None
    plan = read_json_object(file).get("int8_plan")
    if plan is not None and plan not in plan_names():
        raise CheckpointError(f"{file}: int8_plan {plan!r} is not one of {plan_names()}")
    return plan
