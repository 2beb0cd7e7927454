"""Cold start: what a user waits for and how much memory a fresh process takes, per backend.

Two measurements, each in a fresh Python process so that imports, weight loading and the
tokenizer count:

* ``sbr encode`` of 10 lines (the first line of each of the first 10 languages of the bundled
  ``examples/queries.txt``) with ``--backend B``: wall time from process start to exit, and the process's peak resident
  memory (``ru_maxrss`` of that child, read with ``os.wait4``);
* the first ``router.encode`` of one sentence in a fresh interpreter: seconds from the first
  ``import sprachbund_router`` to the vector.

With ``--space-alone`` every backend is also run on a copy of the default router that serves
the space alone (one encoder, the base, for every language; hard links, nothing copied): what the
trained top layers cost at start, as a ratio measured in the same run.

Backends run in rotating order in every round (noise on a shared machine hits each alike); the
table reports medians and each backend's ratio to torch. Writes ``benchmarks/results/cold_start.json``.

    .venv/bin/python -m benchmarks.cold_start [--rounds 5] [--backends auto torch onnx onnx-int8] [--space-alone]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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
router = SprachbundRouter.from_pretrained({model!r}, backend={backend!r})
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


SPACE_ALONE = "space alone"


def space_alone_copy(router: Path, dst: Path) -> Path:
    """A copy of ``router`` (hard links) whose every language is served by the shared encoder:
    the same router without its trained top layers."""
    shutil.copytree(router, dst, copy_function=os.link)
    config_file = dst / "router_config.json"
    config = json.loads(config_file.read_text())
    config["sprachbund_encoders"] = dict.fromkeys(config["sprachbund_encoders"], config["shared_encoder"])
    config.pop("language_encoders", None)
    config_file.unlink()  # a hard link to the original: replaced, never written through
    config_file.write_text(json.dumps(config, indent=1, ensure_ascii=False) + "\n")
    return dst


def ten_lines() -> list[str]:
    """The first line of each of the first 10 languages of the bundled queries (10 per language)."""
    lines = (EXAMPLES / "queries.txt").read_text(encoding="utf-8").splitlines()
    return lines[0:100:10]


def main() -> None:
    from sprachbund_router.paths import default_router_dir

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--backends", nargs="+", default=["auto", "torch", "onnx", "onnx-int8"])
    ap.add_argument("--space-alone", action="store_true", help="also run a copy serving the space alone (one encoder)")
    args = ap.parse_args()

    sbr = [sys.executable, "-m", "sprachbund_router"]
    runs = [(b, b) for b in args.backends] + ([(f"{b}, {SPACE_ALONE}", b) for b in args.backends] if args.space_alone else [])
    rows: dict[str, dict[str, list[float]]] = {name: {"cli_s": [], "cli_mb": [], "first_s": []} for name, _ in runs}
    served: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "ten.txt"
        src.write_text("\n".join(ten_lines()) + "\n", encoding="utf-8")
        models = {b: str(default_router_dir()) for b in args.backends}
        if args.space_alone:
            alone = str(space_alone_copy(default_router_dir(), Path(tmp) / "space-alone"))
            models.update({f"{b}, {SPACE_ALONE}": alone for b in args.backends})
        for r in range(args.rounds):
            order = runs[r % len(runs):] + runs[: r % len(runs)]
            for name, b in order:
                wall, mb, _ = run_child([*sbr, "encode", str(src), "-o", str(Path(tmp) / "out.npy"), "--backend", b,
                                         "--model", models[name]])
                rows[name]["cli_s"].append(wall)
                rows[name]["cli_mb"].append(mb)
                _, _, out = run_child([sys.executable, "-c", FIRST_ENCODE.format(backend=b, model=models[name])])
                seconds, served[name] = out.split()
                rows[name]["first_s"].append(float(seconds))
    med = {b: {k: statistics.median(v) for k, v in m.items()} for b, m in rows.items()}
    base = med.get("torch")
    print(f"{'backend':<22} {'serves':<10} {'sbr encode 10 lines (s)':>24} {'peak MB':>8} {'first encode (s)':>17} "
          f"{'time / torch':>12} {'memory / torch':>14} {'time / space alone':>18} {'memory / space alone':>20}")
    for b, m in med.items():
        ratio_t = f"{m['cli_s'] / base['cli_s']:.2f}" if base else "-"
        ratio_m = f"{m['cli_mb'] / base['cli_mb']:.2f}" if base else "-"
        alone_row = med.get(f"{b}, {SPACE_ALONE}")
        vs_t = f"{m['cli_s'] / alone_row['cli_s']:.2f}" if alone_row else "-"
        vs_m = f"{m['cli_mb'] / alone_row['cli_mb']:.2f}" if alone_row else "-"
        print(f"{b:<22} {served[b]:<10} {m['cli_s']:>24.2f} {m['cli_mb']:>8.0f} {m['first_s']:>17.2f} {ratio_t:>12} "
              f"{ratio_m:>14} {vs_t:>18} {vs_m:>20}")
    result = {
        "what": "cold start per backend, fresh processes: `sbr encode` of 10 lines (wall, peak RSS) and the first "
                "router.encode of one sentence (from import to vector); medians over rounds in rotating order",
        "command": f"python -m benchmarks.cold_start --rounds {args.rounds} --backends {' '.join(args.backends)}"
                   + (" --space-alone" if args.space_alone else ""),
        "machine": describe(), "cpu": cpu_model(), "int8_flags": int8_flags(), "fast_int8": fast_int8(),
        "rounds": args.rounds,
        "backends": {b: {"serves": served[b], "sbr_encode_10_lines_s": round(m["cli_s"], 2),
                         "peak_rss_mb": round(m["cli_mb"]), "first_encode_s": round(m["first_s"], 2),
                         "runs": {k: [round(x, 3) for x in v] for k, v in rows[b].items()},
                         **({"over_space_alone": {
                             "time": round(m["cli_s"] / med[f"{b}, {SPACE_ALONE}"]["cli_s"], 2),
                             "memory": round(m["cli_mb"] / med[f"{b}, {SPACE_ALONE}"]["cli_mb"], 2),
                             "first_encode": round(m["first_s"] / med[f"{b}, {SPACE_ALONE}"]["first_s"], 2)}}
                            if f"{b}, {SPACE_ALONE}" in med else {})}
                     for b, m in med.items()},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cold_start.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
