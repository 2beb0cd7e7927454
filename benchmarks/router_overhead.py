"""Router overhead: `router.encode` vs calling the same encoder directly, side by side.

1,000 short real sentences in 12 languages (Firefox strings, test split). Rounds alternate
between the two paths (and which goes first) so machine noise hits both; the table reports the median of each.
Writes ``benchmarks/results/router_overhead.json``.

    .venv/bin/python -m benchmarks.router_overhead [--rounds 3] [--n 1000]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from benchmarks.machine import describe
from sprachbund_router import SprachbundRouter
from sprachbund_router.paths import data_dir
from training.corpus import read_pairs

LANGS = ["de", "fr", "es", "ru", "zh", "ja", "ar", "hi", "pl", "tr", "ko", "vi"]
RESULTS = Path(__file__).resolve().parent / "results"


def sentences(n: int, max_chars: int = 120) -> list[str]:
    """``n`` real sentences of at most ``max_chars`` characters, round-robin over the languages."""
    per_lang = [[x for x, _ in read_pairs(data_dir() / "corpus", lang, "test") if len(x) <= max_chars] for lang in LANGS]
    out, i = [], 0
    while len(out) < n:
        pool = per_lang[i % len(LANGS)]
        out.append(pool[(i // len(LANGS)) % len(pool)])
        i += 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()

    router = SprachbundRouter.default(backend="torch")
    texts = sentences(args.n)
    routes = router.route(texts)
    names = {r.encoder for r in routes}
    encoder = router.encoder(next(iter(names)))
    router.encode(texts[:64])  # warm-up
    times: dict[str, list[float]] = {"direct": [], "router": []}
    paths = {"direct": encoder.encode, "router": router.encode}
    for r in range(args.rounds):
        for name in (("direct", "router") if r % 2 == 0 else ("router", "direct")):  # ABBA: neither always goes first
            t = time.perf_counter()
            paths[name](texts, batch_size=args.batch_size)
            times[name].append(time.perf_counter() - t)
    t = time.perf_counter()
    router.route(texts)
    t_route = time.perf_counter() - t
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "benchmark": "router_overhead",
        "n_sentences": len(texts),
        "languages": LANGS,
        "encoders_used": sorted(names),
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "seconds": times,
        "sentences_per_second": {k: len(texts) / v for k, v in med.items()},
        "overhead_percent": 100 * (med["router"] / med["direct"] - 1),
        "routing_seconds_1000": t_route * 1000 / len(texts),
        "machine": {"cpu": describe(), "threads": torch.get_num_threads(), "platform": platform.platform(),
                    "torch": torch.__version__},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "router_overhead.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"{'path':<10} {'sent/s':>10} {'median s':>10}")
    for k in ("direct", "router"):
        print(f"{k:<10} {result['sentences_per_second'][k]:>10.1f} {med[k]:>10.2f}")
    print(f"router overhead: {result['overhead_percent']:+.1f}% (goal < 10%); "
          f"language ID + grouping of 1000 texts: {result['routing_seconds_1000']:.3f} s")


if __name__ == "__main__":
    main()
