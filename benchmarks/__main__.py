"""Run every benchmark: ``python -m benchmarks`` (5-10 minutes on 2 CPU cores, by CPU).

* encode speed and peak memory on sentences of <= 120 and <= 50 characters: bare encoder vs
  router (torch), ONNX fp32 and int8 when the default router has been exported (`sbr export
  onnx`); each in its own process, rounds alternating between modes so machine noise hits all;
  the median is reported, with the ratio to the bare encoder taken within each round (median and
  range over rounds);
* cold ``from_pretrained`` time (part of the same runs);
* retrieval cost over 1k, 10k and 100k corpus vectors (search only: the vectors are random
  unit vectors of the encoder's dimension, since encoding 100k sentences is not the point).

Writes ``benchmarks/results/*.json`` and ``benchmarks/results/README.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.machine import describe
from benchmarks.speed import MODES
from sprachbund_router.index import VectorIndex
from sprachbund_router.paths import default_router_dir

RESULTS = Path(__file__).resolve().parent / "results"


def encode_benchmark(rounds: int, n: int, max_chars: int = 120) -> dict:
    onnx_dir = default_router_dir() / "encoders" / "base" / "onnx"
    modes = [m for m in MODES if not m.startswith("router-onnx")]
    if (onnx_dir / "model_pooled.onnx").is_file():
        modes.append("router-onnx")
    if (onnx_dir / "model_pooled_qint8.onnx").is_file():
        modes.append("router-onnx-int8")
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    for _ in range(rounds):
        for mode in modes:
            out = subprocess.run([sys.executable, "-m", "benchmarks.speed", "--mode", mode, "--n", str(n),
                                  "--max-chars", str(max_chars)],
                                 capture_output=True, text=True, check=True)
            runs[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
    table = {}
    for mode, rs in runs.items():
        table[mode] = {k: round(statistics.median(r[k] for r in rs), 2)
                       for k in ("sentences_per_second", "cold_load_seconds", "peak_rss_mib")}
    for mode in table:  # ratio within each round (runs adjacent in time), then the median and range
        ratios = [r["sentences_per_second"] / b["sentences_per_second"] for r, b in zip(runs[mode], runs["direct-torch"])]
        table[mode]["speed_vs_direct_torch"] = round(statistics.median(ratios), 2)
        table[mode]["speed_vs_direct_torch_range"] = [round(min(ratios), 2), round(max(ratios), 2)]
    return {"n_sentences": n, "max_chars": max_chars, "rounds": rounds, "modes": table, "runs": runs}


def retrieval_benchmark(dim: int = 384, n_queries: int = 100) -> dict:
    rng = np.random.default_rng(0)
    q = rng.normal(size=(n_queries, dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    rows = {}
    for n in (1_000, 10_000, 100_000):
        c = rng.normal(size=(n, dim)).astype(np.float32)
        c /= np.linalg.norm(c, axis=1, keepdims=True)
        index = VectorIndex(c, "base")
        index.search(q[:5], 10)
        times = []
        for _ in range(3):
            t = time.perf_counter()
            index.search(q, 10)
            times.append(time.perf_counter() - t)
        rows[str(n)] = {"ms_per_query": round(1000 * statistics.median(times) / n_queries, 3),
                        "index_mib": round(c.nbytes / 2**20, 1)}
    return {"queries": n_queries, "top_k": 10, "dim": dim, "corpus_sizes": rows}


def markdown(encs: list[dict], ret: dict, machine: str) -> str:
    lines = [f"Machine: {machine}. Real sentences in 12 languages (Firefox test split), batch 32, "
             f"median of {encs[0]['rounds']} alternating rounds, each mode in its own process; speed ratios "
             "are taken within each round, then their median.", ""]
    for enc in encs:
        lines += [f"{enc['n_sentences']} sentences of at most {enc['max_chars']} characters:", "",
                  "| mode | sentences/s | vs bare torch encoder (range over rounds) | cold load (s) | peak RSS (MiB) |",
                  "|---|---|---|---|---|"]
        for mode, r in enc["modes"].items():
            lo, hi = r["speed_vs_direct_torch_range"]
            lines.append(f"| {mode} | {r['sentences_per_second']:.1f} | {r['speed_vs_direct_torch']:.2f}x ({lo:.2f}-{hi:.2f}) | "
                         f"{r['cold_load_seconds']:.1f} | {r['peak_rss_mib']:.0f} |")
        lines.append("")
    lines += [f"Retrieval search cost ({ret['queries']} queries, top-{ret['top_k']}, dim {ret['dim']}, exact cosine):", "",
              "| corpus vectors | ms / query | index size (MiB) |", "|---|---|---|"]
    for n, r in ret["corpus_sizes"].items():
        lines.append(f"| {int(n):,} | {r['ms_per_query']} | {r['index_mib']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args()
    machine = describe()
    encs = [encode_benchmark(args.rounds, args.n, 120), encode_benchmark(args.rounds, args.n, 50)]
    ret = retrieval_benchmark()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "encode_speed.json").write_text(json.dumps({"machine": machine, "runs": encs}, indent=1) + "\n")
    (RESULTS / "retrieval_scaling.json").write_text(json.dumps({"machine": machine, **ret}, indent=1) + "\n")
    md = markdown(encs, ret, machine)
    (RESULTS / "README.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
