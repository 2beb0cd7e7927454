"""Adapter training speed on this machine: LoRA on every layer vs on the top layers, side by side.

The real distillation step of the adapter stage (:func:`training.adapters.train_adapter`:
sentence-transformers' trainer, peft LoRA, MSE to the default router's served English vectors,
length-bucketed batches) on the training pairs of one sprachbund, for each variant in turn;
rounds alternate the order so machine noise hits every variant. Reports the median steps/s,
pairs/s and the ratio to LoRA on every layer, and what a 60-minute CPU budget buys (steps per
adapter for four sprachbund adapters plus the ``all`` and four ``random`` baselines at equal
total steps). Writes ``benchmarks/results/adapter_steps.json``.

    .venv/bin/python -m benchmarks.adapter_steps [--steps 30] [--rounds 2] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from benchmarks.machine import describe

RESULTS = Path(__file__).resolve().parent / "results"
logger = logging.getLogger("benchmarks.adapter_steps")


def main() -> None:
    import torch

    from sprachbund_router import SprachbundRouter
    from sprachbund_router.paths import data_dir, default_router_dir
    from training.adapters import AdapterSettings, distillation_rows, train_adapter

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--sprachbund", default="sb4")
    ap.add_argument("--budget-minutes", type=float, default=60.0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for name in ("sentence_transformers", "transformers", "peft"):
        logging.getLogger(name).setLevel(logging.WARNING)

    router_dir = default_router_dir()
    router = SprachbundRouter.from_pretrained(router_dir, backend="torch")
    cfg = router.config
    spec = cfg.encoders[cfg.shared_encoder]
    n_layers = router.encoder(cfg.shared_encoder).num_layers
    members = cfg.sprachbunds[args.sprachbund]
    texts, targets = distillation_rows(data_dir() / "corpus", members, lambda t: router.encode(t, lang="en"), 800)
    base = AdapterSettings(batch_size=args.batch_size, device="cpu", max_seq_length=64)
    variants = {
        f"LoRA r8, all {n_layers} layers": base,
        "LoRA r8, top 4 layers": replace(base, layers=list(range(n_layers - 4, n_layers))),
        "LoRA r8, top 2 layers": replace(base, layers=list(range(n_layers - 2, n_layers))),
    }
    seconds: dict[str, list[float]] = {k: [] for k in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))
            for name in order:
                t0 = time.perf_counter()
                m = train_adapter(router_dir / spec.path, texts, targets, Path(tmp) / f"a{r}-{len(seconds[name])}",
                                  variants[name], args.steps, spec.text_prefix)
                seconds[name].append(m["seconds"])
                logger.info("%s: %.2f steps/s (%.0f s with set-up)", name, args.steps / m["seconds"], time.perf_counter() - t0)
    first = next(iter(variants))
    rows = {}
    for name, s in seconds.items():
        med = statistics.median(s)
        sps = args.steps / med
        # 4 sprachbund adapters + all (4x) + 4 random = 12x the per-adapter steps
        rows[name] = {"steps_per_second": round(sps, 3), "pairs_per_second": round(sps * args.batch_size, 1),
                      "ratio_to_all_layers": round(statistics.median(seconds[first]) / med, 2),
                      "steps_per_adapter_in_budget": int(sps * args.budget_minutes * 60 * 0.75 / 12),
                      "seconds": s}
    result = {"task": "adapter distillation steps on CPU",
              "machine": f"{describe()}, torch {torch.__version__}, {torch.get_num_threads()} threads",
              "command": f"python -m benchmarks.adapter_steps --steps {args.steps} --rounds {args.rounds} "
                         f"--batch-size {args.batch_size}",
              "sprachbund": args.sprachbund, "training_rows": len(texts), "batch_size": args.batch_size,
              "budget_note": f"steps per adapter so that 12x of them (4 sprachbund + all at 4x + 4 random) take 75% of "
                             f"{args.budget_minutes:g} minutes (the rest: teacher vectors, loading, scoring)",
              "variants": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "adapter_steps.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"| variant | steps/s | pairs/s | ratio | steps per adapter in {args.budget_minutes:g} min |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['steps_per_second']} | {r['pairs_per_second']} | {r['ratio_to_all_layers']} | "
              f"{r['steps_per_adapter_in_budget']} |")


if __name__ == "__main__":
    main()
