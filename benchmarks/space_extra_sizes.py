"""How many LibreOffice pairs per language the vector space's maps should take: "all", the
sprachbund procedure (``maps = "auto"``) and random groups (3 seeds) at 500 and 1,000 extra pairs
per language (2,000 is in ``python -m benchmarks.space_report --extra libreoffice``), scored on the
held-out sets of the space report (400 pairs per language or pair). Uses the space report's
cached base vectors, so it takes a few minutes once that report has run.
Writes ``benchmarks/results/space_extra_sizes.json``.

    .venv/bin/python -m benchmarks.space_extra_sizes [--sizes 500,1000]
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from benchmarks.machine import describe

RESULTS = Path(__file__).resolve().parent / "results"
SETS = ("test", "ood", "help", "cross", "table3")


def main() -> None:
    from benchmarks.space_report import FINE_SHRINK
    from sprachbund_router.config import RouterConfig
    from sprachbund_router.encoder import SentenceEncoder
    from sprachbund_router.paths import cache_root, data_dir, default_router_dir
    from training.held_out_eval import held_out_sets, make_space, score_sets, served_by
    from training.space import SpaceSettings, VectorCache, ensure_space_data, fit_space
    from training.sprachbunds import random_groups

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="500,1000")
    ap.add_argument("--n", type=int, default=400)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    router_dir = default_router_dir()
    cfg = RouterConfig.load(router_dir)
    groups, corpus = cfg.sprachbunds, data_dir() / "corpus"
    ensure_space_data(corpus, groups, SpaceSettings(maps="all", extra_pairs=["libreoffice"]))
    spec = cfg.encoders[cfg.shared_encoder]
    enc = SentenceEncoder.from_pretrained(router_dir / spec.path, cfg.pooling, spec)  # type: ignore[operator]
    cache = VectorCache(lambda t: enc.encode(t, batch_size=64), cache_root() / "vectors" / "base.npz")
    sets = held_out_sets(corpus, cfg.languages, groups, args.n)
    out: dict[str, dict[str, float]] = {}
    for size in (int(s) for s in args.sizes.split(",")):
        plans = [("all", "all", groups), ("sprachbund auto", "auto", groups)]
        plans += [(f"random{seed}", "auto", random_groups(groups, seed)) for seed in (1, 2, 3)]
        for name, maps, on in plans:
            settings = SpaceSettings(maps=maps, extra_pairs=["libreoffice"], max_extra_pairs=size, shrink=list(FINE_SHRINK))
            serve = served_by(make_space(fit_space(cache, corpus, on, settings), on, settings))
            scores = score_sets(lambda key, lang, texts, s=serve: s(lang, cache(texts), False), sets)
            out[f"{size} {name}"] = {k: scores[k] for k in SETS}
        out[f"{size} random mean"] = {k: round(float(np.mean([out[f"{size} random{s}"][k] for s in (1, 2, 3)])), 2) for k in SETS}
    cache.save()
    result = {"task": "extra LibreOffice pairs per language for the maps", "machine": describe(),
              "command": f"python -m benchmarks.space_extra_sizes --sizes {args.sizes} --n {args.n}",
              "metric": "top-1 (%), mean of both directions, as benchmarks.space_report", "variants": out}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "space_extra_sizes.json").write_text(json.dumps(result, indent=1) + "\n")
    print("| extra pairs, variant | " + " | ".join(SETS) + " |")
    print("|---" * (len(SETS) + 1) + "|")
    for name, v in out.items():
        print(f"| {name} | " + " | ".join(f"{v[k]:.2f}" for k in SETS) + " |")


if __name__ == "__main__":
    main()
