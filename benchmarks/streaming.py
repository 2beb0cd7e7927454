"""Streaming CLI: peak memory and time to first output of `sbr identify` and `sbr encode` on 1,000,000 lines.

Short real interface strings (Firefox, test split, 12 languages, at most 40 characters) are
written to a file of ``--lines`` lines. Each command runs as its own process (the installed
``sbr``); its resident memory (process tree) is sampled every 50 ms, and the time to its first
output (first byte on stdout for `identify`, first rows in the `.npy` for `encode`) is recorded.
`identify` runs to the end; `encode` (about 200 lines/s on 2 CPU cores, so over an hour for a
million lines) is interrupted with SIGINT after ``--encode-seconds``, which also checks that an
interrupted run leaves a valid `.npy` holding the rows done. Writes
``benchmarks/results/streaming.json``.

    .venv/bin/python -m benchmarks.streaming [--lines 1000000] [--encode-seconds 120]
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from benchmarks.machine import describe
from benchmarks.router_overhead import sentences

RESULTS = Path(__file__).resolve().parent / "results"


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run(cmd: list[str], *, stdout_path: Path, first_output, seconds: float | None = None) -> dict:
    """Run ``cmd``, sampling memory; ``first_output()`` says whether output has appeared."""
    t0 = time.perf_counter()
    with stdout_path.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL)
        ps = psutil.Process(proc.pid)
        peak, first = 0, None
        interrupted = False
        while proc.poll() is None:
            try:
                peak = max(peak, _tree_rss(ps))
            except psutil.Error:
                pass
            now = time.perf_counter() - t0
            if first is None and first_output():
                first = now
            if seconds is not None and now > seconds and not interrupted:
                proc.send_signal(signal.SIGINT)
                interrupted = True
            time.sleep(0.05)
    wall = time.perf_counter() - t0
    if first is None and first_output():
        first = wall
    return {"exit_code": proc.returncode, "wall_s": round(wall, 1), "peak_rss_mib": round(peak / 2**20, 1),
            "first_output_s": None if first is None else round(first, 2), "interrupted": interrupted}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--encode-seconds", type=float, default=120.0)
    ap.add_argument("--output", type=Path, default=RESULTS / "streaming.json")
    args = ap.parse_args()
    sbr = str(Path(sys.executable).with_name("sbr"))
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        inp = tmpd / "lines.txt"
        pool = sentences(5000, max_chars=40)
        with inp.open("w", encoding="utf-8") as f:
            for i in range(args.lines):
                f.write(pool[i % len(pool)] + "\n")
        size_mib = inp.stat().st_size / 2**20
        rows = {}
        out_tsv = tmpd / "identify.tsv"
        res = run([sbr, "identify", str(inp)], stdout_path=out_tsv,
                  first_output=lambda: out_tsv.stat().st_size > 100)
        with out_tsv.open("rb") as f:
            res["lines_out"] = sum(1 for _ in f) - 1
        res["lines_per_s"] = round(res["lines_out"] / res["wall_s"], 1)
        rows["identify"] = res
        npy = tmpd / "v.npy"

        def npy_rows() -> int:
            try:
                return int(np.load(npy, mmap_mode="r").shape[0]) if npy.stat().st_size > 128 else 0
            except (OSError, ValueError):
                return 0

        res = run([sbr, "encode", str(inp), "-o", str(npy)], stdout_path=tmpd / "encode.out",
                  first_output=lambda: npy_rows() > 0, seconds=args.encode_seconds)
        res["rows_in_npy_after_stop"] = npy_rows()
        res["lines_per_s"] = round(res["rows_in_npy_after_stop"] / res["wall_s"], 1)
        rows["encode"] = res
    record = {
        "lines": args.lines, "input_mib": round(size_mib, 1), "machine": describe(),
        "command": "python -m benchmarks.streaming " + " ".join(sys.argv[1:]), "results": rows,
        "target": "peak memory < 2 GB; first output within seconds",
    }
    print(f"{args.lines:,} lines ({size_mib:.1f} MiB), {record['machine']}")
    print(f"{'command':10} {'exit':>5} {'wall s':>8} {'first out s':>12} {'peak MiB':>9} {'lines/s':>9}")
    for name, r in rows.items():
        print(f"{name:10} {r['exit_code']:>5} {r['wall_s']:>8} {r['first_output_s']!s:>12} {r['peak_rss_mib']:>9} "
              f"{r['lines_per_s']:>9}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
