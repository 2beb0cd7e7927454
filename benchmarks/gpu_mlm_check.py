"""Continued MLM pre-training on a GPU, with the same code as on CPU (accelerate).

Run on a machine with a GPU, from the repository root, with a folder DATA holding the base
encoder's ``config.json`` and tokenizer files and ``texts.json`` (language -> sentences):

    python -m benchmarks.gpu_mlm_check DATA OUT_DIR [--steps 300]

The encoder weights are randomly initialised from the config (the check is about the
training loop on the device: placement, bf16, checkpoint and resume, speed), so loss values
say nothing about quality. Writes OUT_DIR/gpu_mlm_check.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch
from transformers import BertConfig, BertModel

from training import mlm as mlm_module
from training.mlm import MLMConfig, continue_pretraining


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    work = Path("/tmp/gpu-mlm")
    shutil.rmtree(work, ignore_errors=True)
    base = work / "base"
    torch.manual_seed(0)
    BertModel(BertConfig.from_pretrained(args.data), add_pooling_layer=False).save_pretrained(base, safe_serialization=True)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(args.data / f, base / f)
    texts = json.loads((args.data / "texts.json").read_text())
    cfg = MLMConfig(steps=args.steps, batch_size=args.batch_size, seq_len=128, lr=1e-4, warmup_steps=20,
                    head_warmup_steps=20, checkpoint_every=args.steps // 2, eval_sentences=50, mixed_precision="bf16")

    # run 1: interrupted just after the mid-run checkpoint
    real, calls = mlm_module.sample_batch, {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == args.steps // 2 + 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    mlm_module.sample_batch = flaky
    t = time.perf_counter()
    try:
        continue_pretraining(base, texts, work / "enc", cfg)
    except KeyboardInterrupt:
        pass
    first = time.perf_counter() - t
    mlm_module.sample_batch = real
    resumed_from = sorted(p.name for p in (work / "enc.checkpoints").glob("step-*"))
    t = time.perf_counter()
    metrics = continue_pretraining(base, texts, work / "enc", cfg)
    second = time.perf_counter() - t
    steps_run = args.steps - args.steps // 2
    result = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "device_type": metrics["device_type"], "mixed_precision": cfg.mixed_precision,
        "steps": args.steps, "batch_size": args.batch_size, "seq_len": cfg.seq_len,
        "interrupted_after_seconds": round(first, 1), "checkpoints_found": resumed_from,
        "resumed_run_seconds": round(second, 1), "steps_per_second_resumed": round(steps_run / second, 2),
        "held_out_mlm_loss_before_after": [metrics["before"]["mlm_loss"], metrics["after"]["mlm_loss"]],
        "loss_curve": metrics["loss_curve"], "nan_free": metrics["nan_free"],
        "torch": torch.__version__,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_mlm_check.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
