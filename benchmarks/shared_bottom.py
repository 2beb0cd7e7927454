"""Scoring several top-layer adapters: one full forward pass per model against the shared lower
layers of :mod:`training.shared_bottom`, side by side on the same texts.

Loads the default router's shared encoder and every adapter in ``ADAPTERS_DIR`` (what an adapter
build trains: ``sb1`` ..., ``all``, ``random1`` ...), takes held-out test texts of the router's
languages, and encodes them with each model (a) separately, as the adapter report did before,
and (b) in one :func:`training.shared_bottom.encode_shared` pass; rounds alternate the order.
Reports seconds, the speed-up and the largest difference between the two (they must agree).
Writes ``benchmarks/results/shared_bottom.json``.

    .venv/bin/python -m benchmarks.shared_bottom ADAPTERS_DIR [--texts 600] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks.machine import describe

RESULTS = Path(__file__).resolve().parent / "results"
logger = logging.getLogger("benchmarks.shared_bottom")


def main() -> None:
    from sprachbund_router import SprachbundRouter
    from sprachbund_router.adapters import apply_lora
    from sprachbund_router.encoder import SentenceEncoder
    from sprachbund_router.paths import data_dir, default_router_dir
    from training.corpus import read_pairs
    from training.shared_bottom import BASE, encode_shared, first_changed_layer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("adapters", type=Path)
    ap.add_argument("--texts", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    router = SprachbundRouter.from_pretrained(default_router_dir(), backend="torch")
    cfg = router.config
    base = router.encoder(cfg.shared_encoder)
    assert isinstance(base, SentenceEncoder)
    names = sorted(p.name for p in args.adapters.iterdir() if (p / "adapter_config.json").is_file())
    models = {name: apply_lora(base.model, args.adapters / name) for name in names}
    langs = [lang for lang in cfg.languages if lang != "en"]
    per = max(1, args.texts // len(langs))
    texts = list(dict.fromkeys(x for lang in langs for x, _ in read_pairs(data_dir() / "corpus", lang, "test")[:per]))
    needs = {BASE: texts, **dict.fromkeys(names, texts)}
    seconds: dict[str, list[float]] = {"one forward pass per model": [], "shared lower layers": []}
    diff = 0.0
    for r in range(args.rounds):
        order = list(seconds) if r % 2 == 0 else list(reversed(seconds))
        for way in order:
            t0 = time.perf_counter()
            if way == "shared lower layers":
                shared = encode_shared(base, models, needs, args.batch_size)
            else:
                separate = {BASE: base.encode(texts, batch_size=args.batch_size)}
                for name, model in models.items():
                    enc = SentenceEncoder(model, base.tokenizer, base.pooling, text_prefix=base.text_prefix, max_length=base.max_length)
                    separate[name] = enc.encode(texts, batch_size=args.batch_size)
            seconds[way].append(time.perf_counter() - t0)
        diff = max(diff, max(float(np.abs(np.stack([shared[n][t] for t in texts]) - separate[n]).max()) for n in needs))
    base_rows = np.stack([shared[BASE][t] for t in texts])
    moved = {n: round(float(np.abs(np.stack([shared[n][t] for t in texts]) - base_rows).max()), 4) for n in names}
    med = {way: statistics.median(v) for way, v in seconds.items()}
    ref = med["one forward pass per model"]
    starts = {name: first_changed_layer(base.model, m) for name, m in models.items()}
    result = {
        "task": "encode held-out texts with the base and every adapter: separate passes vs shared lower layers",
        "command": f"python -m benchmarks.shared_bottom {args.adapters} --texts {args.texts} --rounds {args.rounds}",
        "machine": describe(),
        "texts": len(texts), "models": 1 + len(models), "layers": base.num_layers, "first_adapted_layer": starts,
        "batch_size": args.batch_size, "rounds": args.rounds,
        "seconds_median": {k: round(v, 2) for k, v in med.items()},
        "speedup": round(ref / med["shared lower layers"], 2),
        "max_abs_difference": diff,
        "largest_change_from_base_per_adapter": moved,
    }
    print("| way | seconds (median) | ratio |\n|---|---|---|")
    for way, v in med.items():
        print(f"| {way} | {v:.1f} | {ref / v:.2f} |")
    print(f"max |difference| {diff:.2e} over {len(texts)} texts x {1 + len(models)} models; "
          f"each adapter moves the base's vectors by up to {moved}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "shared_bottom.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
