"""How compactly the token-embedding table can be served: float16 rows and int8 rows with a
per-row scale against today's float32 table, on the default router's base encoder.

Every text of the held-out sources' dev halves (both sides of each pair; ``--rows`` per source
and language) is encoded with PyTorch three times: the float32 table, the table rounded to
float16, and the table quantised to int8 with one scale per row (max-abs / 127). The table
reports the cosine of each variant's vectors to the float32 ones (minimum, 0.1% quantile, mean)
and the table's size. The ONNX backend serves the float16 rows (``exporters/onnx.py``); the goal
was cosine >= 0.9995 on every text. Writes ``benchmarks/results/embedding_table.json``.

    .venv/bin/python -m benchmarks.embedding_table [--rows 30]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.machine import describe
from exporters.onnx import default_check_sets
from sprachbund_router.paths import default_router_dir
from sprachbund_router.router import SprachbundRouter

RESULTS = Path(__file__).resolve().parent / "results"
GOAL = 0.9995


def dev_texts(rows: int) -> tuple[list[str], str]:
    _, check, what = default_check_sets(default_router_dir(), rows)
    if isinstance(check, list):
        return sorted({t for pair in check for t in pair}), what
    return check.texts(("dev",)), what


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=30, help="dev rows per held-out source and language")
    args = ap.parse_args()
    texts, what = dev_texts(args.rows)
    encoder = SprachbundRouter.default(backend="torch").encoder("base")
    table = encoder.model.get_input_embeddings().weight
    original = table.detach().clone()
    started = time.time()
    reference = encoder.encode(texts, batch_size=64)
    scale = original.abs().amax(dim=1, keepdim=True) / 127
    variants = {
        "float16": (original.half().float(), 2 * original.numel()),
        "int8 per-row scale": (torch.round(original / scale).clamp(-127, 127) * scale, original.numel() + 4 * len(original)),
    }
    rows = {}
    try:
        for name, (weights, size) in variants.items():
            with torch.no_grad():
                table.copy_(weights)
            cos = (reference * encoder.encode(texts, batch_size=64)).sum(axis=1)
            rows[name] = {"min_cosine": round(float(cos.min()), 7), "q001_cosine": round(float(np.quantile(cos, 0.001)), 7),
                          "mean_cosine": round(float(cos.mean()), 7), "below_goal": int((cos < GOAL).sum()),
                          "table_mb": round(size / 2**20)}
    finally:
        with torch.no_grad():
            table.copy_(original)
    print(f"{len(texts)} texts ({what}); float32 table {round(4 * original.numel() / 2**20)} MB")
    print(f"{'table':<20} {'MB':>5} {'min cos':>10} {'0.1% cos':>10} {'mean cos':>10} {'< ' + str(GOAL):>8}")
    for name, r in rows.items():
        print(f"{name:<20} {r['table_mb']:>5} {r['min_cosine']:>10.7f} {r['q001_cosine']:>10.7f} {r['mean_cosine']:>10.7f} "
              f"{r['below_goal']:>8}")
    result = {"what": "token-embedding table variants vs float32: cosine of the base encoder's vectors, every text of "
                      "the held-out sources' dev halves", "command": f"python -m benchmarks.embedding_table --rows {args.rows}",
              "machine": describe(), "texts": len(texts), "check_set": what, "goal_min_cosine": GOAL,
              "float32_table_mb": round(4 * original.numel() / 2**20), "seconds": round(time.time() - started),
              "variants": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "embedding_table.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
