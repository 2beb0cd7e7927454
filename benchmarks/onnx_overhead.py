"""ONNX backend throughput against a bare onnxruntime session of the same graph.

Two kinds of text from the held-out sources' dev halves (the non-English side): short interface
messages (the interface sources) and prose paragraphs (the prose sources). Three ways to encode
them, alternating in rounds (which goes first rotates):

* ``bare``: the loop a careful user writes around the graph alone: tokenise each window with
  ``tokenizers``, sort by length, pad, gather the float16 token rows, ``session.run``;
* ``backend``: :class:`~sprachbund_router.onnx_encoder.OnnxSentenceEncoder` (the same graph,
  session and table, plus the package's checks: truncation warning, ids in range, finiteness);
* ``router``: ``router.encode`` with ``lang=`` given (space and routing bookkeeping on top).

Reports sentences/s and each path's overhead over ``bare`` (goal: the backend at most 5%).
Writes ``benchmarks/results/onnx_overhead.json``.

    .venv/bin/python -m benchmarks.onnx_overhead [--backend onnx] [--n 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.machine import describe
from exporters.onnx import default_check_sets
from sprachbund_router.batching import length_sorted_batches, windows
from sprachbund_router.paths import default_router_dir
from sprachbund_router.router import SprachbundRouter
from training.held_out_sources import source_kinds

RESULTS = Path(__file__).resolve().parent / "results"


def texts_by_kind(n: int) -> dict[str, tuple[list[str], list[str]]]:
    """kind -> (texts, their languages): the first ``n`` non-English dev texts, round-robin over sources."""
    _, check, _ = default_check_sets(default_router_dir(), 200)
    kinds = source_kinds()
    out = {}
    for kind in ("interface", "prose"):
        pools = [[(x, lang) for lang, pairs in per_split["dev"].items() for x, _ in pairs]
                 for source, per_split in check.rows.items() if kinds.get(source) == kind]
        rows = [pool[i] for i in range(max(map(len, pools))) for pool in pools if i < len(pool)][:n]
        out[kind] = ([x for x, _ in rows], [lang for _, lang in rows])
    return out


def bare_loop(encoder: object, batch_size: int) -> Callable[[list[str]], np.ndarray]:
    """The graph alone: what a user would write with onnxruntime and tokenizers."""
    tok, session, table, pad = encoder.tokenizer, encoder.session, encoder.table, encoder.pad_id  # type: ignore[attr-defined]
    prefix = encoder.text_prefix  # type: ignore[attr-defined]

    def run(texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), encoder.dim), dtype=np.float32)  # type: ignore[attr-defined]
        for start, stop in windows(len(texts), batch_size):
            encs = tok.encode_batch([prefix + t for t in texts[start:stop]])
            for idx in length_sorted_batches([len(e.ids) for e in encs], batch_size):
                width = len(encs[idx[0]].ids)
                ids = np.full((len(idx), width), pad, dtype=np.int64)
                mask = np.zeros((len(idx), width), dtype=np.int64)
                for row, i in enumerate(idx):
                    ids[row, : len(encs[i].ids)] = encs[i].ids
                    mask[row, : len(encs[i].ids)] = 1
                feeds = {"inputs_embeds": table[ids].astype(np.float32), "attention_mask": mask}
                out[[start + i for i in idx]] = session.run(None, feeds)[0]
        return out

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--backend", default="onnx", choices=["onnx", "onnx-int8"])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    router = SprachbundRouter.default(backend=args.backend)
    encoder = router.encoder(router.config.shared_encoder)
    if getattr(encoder, "table", None) is None:
        raise SystemExit("the router's graphs take input_ids (exported before the float16 table): export again")
    bare = bare_loop(encoder, args.batch_size)
    result: dict[str, dict] = {}
    for kind, (texts, langs) in texts_by_kind(args.n).items():
        paths = {"bare": bare, "backend": lambda t: encoder.encode(t, batch_size=args.batch_size),
                 "router": lambda t, langs=langs: router.encode(t, lang=langs, batch_size=args.batch_size)}
        router.encode(texts[:64], lang=langs[:64])  # warm-up: the session's first runs and the space
        seconds: dict[str, list[float]] = {p: [] for p in paths}
        for r in range(args.rounds):
            names = list(paths)[r % 3:] + list(paths)[: r % 3]
            for name in names:
                t = time.perf_counter()
                paths[name](texts)
                seconds[name].append(time.perf_counter() - t)
        med = {p: statistics.median(v) for p, v in seconds.items()}
        result[kind] = {"texts": len(texts), "mean_chars": round(float(np.mean([len(t) for t in texts])), 1),
                        **{p: {"sentences_per_s": round(len(texts) / med[p], 1),
                               "overhead_pct": round(100 * (med[p] / med["bare"] - 1), 1),
                               "seconds": [round(x, 3) for x in seconds[p]]} for p in paths}}
    print(f"{'text':<10} {'chars':>6} {'bare /s':>9} {'backend /s':>11} {'overhead':>9} {'router /s':>10} {'overhead':>9}")
    for kind, r in result.items():
        print(f"{kind:<10} {r['mean_chars']:>6} {r['bare']['sentences_per_s']:>9} {r['backend']['sentences_per_s']:>11} "
              f"{r['backend']['overhead_pct']:>8}% {r['router']['sentences_per_s']:>10} {r['router']['overhead_pct']:>8}%")
    out = {"what": "ONNX backend and router.encode against a bare onnxruntime loop over the same graph, session and table; "
                   "dev texts of the held-out sources", "goal_overhead_pct": 5.0,
           "command": f"python -m benchmarks.onnx_overhead --backend {args.backend} --n {args.n} --rounds {args.rounds}",
           "machine": describe(), "backend": args.backend, "batch_size": args.batch_size, "kinds": result}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"onnx_overhead{'_int8' if args.backend == 'onnx-int8' else ''}.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
