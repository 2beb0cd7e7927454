"""One speed/memory measurement in a fresh process (so peak memory is its own).

    python -m benchmarks.speed --mode router-torch|direct-torch|router-onnx|router-onnx-int8 [--n 1000]

Prints one JSON line: cold-load seconds, sentences/second over ``n`` short real sentences
(after a warm-up), peak resident memory (MiB).
"""

from __future__ import annotations

import argparse
import json
import resource
import time

MODES = ("direct-torch", "router-torch", "router-onnx", "router-onnx-int8")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=MODES, required=True)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-chars", type=int, default=120)
    args = ap.parse_args()
    from benchmarks.router_overhead import sentences

    texts = sentences(args.n, args.max_chars)
    t0 = time.perf_counter()
    from sprachbund_router import SprachbundRouter

    backend = {"router-onnx": "onnx", "router-onnx-int8": "onnx-int8"}.get(args.mode, "torch")
    router = SprachbundRouter.default(backend=backend)
    if args.mode == "direct-torch":
        enc = router.encoder(router.config.shared_encoder)

        def run(batch: list[str]) -> object:
            return enc.encode(batch, batch_size=args.batch_size)
    else:

        def run(batch: list[str]) -> object:
            return router.encode(batch, batch_size=args.batch_size)

    run(texts[:8])
    cold = time.perf_counter() - t0
    run(texts[:64])
    t = time.perf_counter()
    run(texts)
    secs = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"mode": args.mode, "n": len(texts), "max_chars": args.max_chars, "seconds": secs,
                      "sentences_per_second": len(texts) / secs,
                      "cold_load_seconds": cold, "peak_rss_mib": peak}))


if __name__ == "__main__":
    main()
