"""The int8 ONNX router (and the fp32 one) against PyTorch on every held-out source's **test** half.

`sbr export onnx` chose the int8 variant on the sources' dev halves; this scores what it kept on
the test halves, which no choice has seen: the router's served vectors (space and retrieval
scoring included) with the ``onnx-int8`` backend and with PyTorch, top-1 to English among all
of a source's English test messages, mean over languages, per source (the leave-one-source-out
protocol's rows: ``training.loso.CAPS``). The issue's bound: at most 0.5 points lost on every
source. Each source's drop is paired (both backends on the same rows) and comes with its standard
error and the rows int8 loses and gains (``training.source_eval.compare``). The fp32 ONNX backend
(what ``auto`` serves on CPUs without fast int8) is scored the same way; its goal: the same top-1
as PyTorch within 0.1 on every source. Writes ``benchmarks/results/int8_sources.json`` and prints a table.

    .venv/bin/python -m benchmarks.int8_sources [--rows 60]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
#: The most top-1 points the int8 router may lose on any source's test half.
BOUND = 0.5


def main() -> None:
    from benchmarks.machine import describe
    from sprachbund_router import SprachbundRouter
    from sprachbund_router.backend import ONNX_DIR, ONNX_EXPORT_INFO
    from sprachbund_router.config import RouterConfig
    from sprachbund_router.paths import data_dir, default_router_dir
    from training.held_out_sources import MANIFEST
    from training.loso import CAPS, Data
    from training.source_eval import ServedVectors, compare, served_hits

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=CAPS["test"], help="Test rows per source and language.")
    ap.add_argument("--router", type=Path, default=None, help="Router directory (default: the embedded default).")
    ap.add_argument("--out", type=Path, default=RESULTS / "int8_sources.json", help="Results file.")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    router_dir = args.router or default_router_dir()
    cfg = RouterConfig.load(router_dir)
    corpus = data_dir() / "corpus"
    manifest = corpus / "sources" / MANIFEST
    if not manifest.is_file():
        raise SystemExit(f"no held-out sources in {corpus}: python -m training.held_out_sources")
    sources = sorted(json.loads(manifest.read_text())["sources"])
    data = Data.load(corpus, sources, cfg.languages, cfg.language_to_sprachbund, {"train": 0, "dev": 0, "test": args.rows})
    started = time.perf_counter()
    timings = {}
    scores = {}
    for backend in ("torch", "onnx-int8", "onnx"):
        t0 = time.perf_counter()
        router = SprachbundRouter.from_pretrained(router_dir, backend=backend)
        scores[backend] = served_hits(ServedVectors(router, data, "test"), cfg.retrieval_scoring)
        timings[backend] = round(time.perf_counter() - t0, 1)
        del router
    result = compare(scores["torch"], scores["onnx-int8"])
    fp32 = compare(scores["torch"], scores["onnx"])
    fp32["max_abs_difference"] = max(abs(r["drop"]) for r in fp32["sources"].values())
    export = {}
    for name in sorted(cfg.served_encoders()):
        spec = cfg.encoders[name]
        info_file = router_dir / (spec.path or "") / ONNX_DIR / ONNX_EXPORT_INFO
        if spec.path and info_file.is_file():
            info = json.loads(info_file.read_text())
            export[name] = {"int8": info.get("int8"), "exported": info.get("exported")}
    kinds = data.kinds
    rows = result["sources"]
    print(f"| source | kind | languages | rows | PyTorch | int8 | drop (bound {BOUND}) | standard error | rows lost / gained |")
    print("|---|---|---|---|---|---|---|---|---|")
    for source, r in rows.items():
        print(f"| {source} | {kinds[source]} | {r['languages']} | {r['rows']} | {r['reference']} | {r['other']} | "
              f"{r['drop']} | {r['drop_se']} | {r['lost']} / {r['gained']} |")
    print(f"worst drop {result['max_drop']} ({result['worst_source']}), mean {result['mean_drop']}")
    print(f"fp32 ONNX against PyTorch: largest difference {fp32['max_abs_difference']} points "
          f"(worst drop {fp32['max_drop']}, {fp32['worst_source']})")
    out = {"what": __doc__.split("\n\n")[0], "split": "test", "rows_per_language": args.rows,
           "scoring": cfg.retrieval_scoring, "bound": BOUND, "within_bound": result["max_drop"] <= BOUND,
           "kinds": kinds, **result, "onnx_fp32": fp32, "export": export, "seconds": timings,
           "total_seconds": round(time.perf_counter() - started, 1),
           "machine": describe() + " (no GPU)",
           "command": f"python -m benchmarks.int8_sources --rows {args.rows}"
                      + (f" --out {args.out.name}" if args.out.name != "int8_sources.json" else "")}
    RESULTS.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
