"""Cold start: what a user waits for and how much memory a fresh process takes, per backend.

Two measurements, each in a fresh Python process so that imports, weight loading and the
tokenizer count:

* ``sbr encode`` of 10 lines (the first 10 of the bundled ``examples/queries.txt``: 10 languages)
  with ``--backend B``: wall time from process start to exit, and the process's peak resident
  memory (``ru_maxrss`` of that child, read with ``os.wait4``);
* the first ``router.encode`` of one sentence in a fresh interpreter: seconds from the first
  ``import sprachbund_router`` to the vector.

Backends run in rotating order in every round (noise on a shared machine hits each alike); the
table reports medians and each backend's ratio to torch. Writes ``benchmarks/results/cold_start.json``.

    .venv/bin/python -m benchmarks.cold_start [--rounds 5] [--backends auto torch onnx onnx-int8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.machine import describe
from sprachbund_router.cpu import cpu_model, fast_int8, int8_flags

RESULTS = Path(__file__).resolve().parent / "results"
EXAMPLES = Path(__file__).resolve().parents[1] / "sprachbund_router" / "examples"
FIRST_ENCODE = """
import time
t = time.perf_counter()
from sprachbund_router import SprachbundRouter
router = SprachbundRouter.default(backend={backend!r})
router.encode(["Die Katze schläft auf dem Sofa."])
print(time.perf_counter() - t, router.backend)
"""


def run_child(argv: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stdout) of one child process."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak memory
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {err.read()[-1500:]}")
        return wall, usage.ru_maxrss / 1024, out.read()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--backends", nargs="+", default=["auto", "torch", "onnx", "onnx-int8"])
    args = ap.parse_args()

    sbr = [sys.executable, "-m", "sprachbund_router"]
    lines = (EXAMPLES / "queries.txt").read_text(encoding="utf-8").splitlines()[:10]
    rows: dict[str, dict[str, list[float]]] = {b: {"cli_s": [], "cli_mb": [], "first_s": []} for b in args.backends}
    served: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "ten.txt"
        src.write_text("\n".join(lines) + "\n", encoding="utf-8")
        for r in range(args.rounds):
            order = args.backends[r % len(args.backends):] + args.backends[: r % len(args.backends)]
            for b in order:
                wall, mb, _ = run_child([*sbr, "encode", str(src), "-o", str(Path(tmp) / f"{b}.npy"), "--backend", b])
                rows[b]["cli_s"].append(wall)
                rows[b]["cli_mb"].append(mb)
                _, _, out = run_child([sys.executable, "-c", FIRST_ENCODE.format(backend=b)])
                seconds, served[b] = out.split()
                rows[b]["first_s"].append(float(seconds))
    med = {b: {k: statistics.median(v) for k, v in m.items()} for b, m in rows.items()}
    base = med.get("torch")
    print(f"{'backend':<10} {'serves':<10} {'sbr encode 10 lines (s)':>24} {'peak MB':>8} {'first encode (s)':>17} "
          f"{'time / torch':>12} {'memory / torch':>14}")
    for b, m in med.items():
        ratio_t = f"{m['cli_s'] / base['cli_s']:.2f}" if base else "-"
        ratio_m = f"{m['cli_mb'] / base['cli_mb']:.2f}" if base else "-"
        print(f"{b:<10} {served[b]:<10} {m['cli_s']:>24.2f} {m['cli_mb']:>8.0f} {m['first_s']:>17.2f} {ratio_t:>12} {ratio_m:>14}")
    result = {
        "what": "cold start per backend, fresh processes: `sbr encode` of 10 lines (wall, peak RSS) and the first "
                "router.encode of one sentence (from import to vector); medians over rounds in rotating order",
        "command": f"python -m benchmarks.cold_start --rounds {args.rounds} --backends {' '.join(args.backends)}",
        "machine": describe(), "cpu": cpu_model(), "int8_flags": int8_flags(), "fast_int8": fast_int8(),
        "rounds": args.rounds,
        "backends": {b: {"serves": served[b], "sbr_encode_10_lines_s": round(m["cli_s"], 2),
                         "peak_rss_mb": round(m["cli_mb"]), "first_encode_s": round(m["first_s"], 2),
                         "runs": {k: [round(x, 3) for x in v] for k, v in rows[b].items()}}
                     for b, m in med.items()},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cold_start.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
