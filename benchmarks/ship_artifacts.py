"""Ship a build's artifacts with the package (``training/artifacts``), so ``sbr setup`` need not compute them.

    python -m benchmarks.ship_artifacts language-vectors BUILD_WORK_DIR [--config PRESET]
    python -m benchmarks.ship_artifacts space ROUTER_DIR [--loso benchmarks/results/loso.json]
    python -m benchmarks.ship_artifacts top-layers MODEL_DIR [--router ROUTER_DIR]

Each artifact is recorded with its stage key, the sha256 of its file and the probe vectors of the
encoder that computed it; a build takes it only when all three match (``training.shipped``,
``training.space.shipped_space``). A maintainer tool: it reads the checkout's results, which the
build itself never does.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from benchmarks.loso import LOSO_RESULTS, loso_summary

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    from training.pipeline import DEFAULT_PRESET, load_base_encoder_for, load_build_config
    from training.shipped import ship_language_vectors
    from training.space import ship_space

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    lv = sub.add_parser("language-vectors", help="the language-vector stage of a build")
    lv.add_argument("work", type=Path, help="the build's work directory (e.g. ~/.cache/sprachbund-router/build/default)")
    lv.add_argument("--config", type=Path, default=DEFAULT_PRESET, help="the build config it ran (default: the default preset)")
    sp = sub.add_parser("space", help="a built router's fitted vector space")
    sp.add_argument("router", type=Path)
    sp.add_argument("--loso", type=Path, default=LOSO_RESULTS, help="the protocol's results recorded with it")
    tl = sub.add_parser("top-layers", help="the all-languages top layers trained on every source "
                                           "(`python -m benchmarks.sprachbund_encoders --judge none`)")
    tl.add_argument("model", type=Path, help="the trained model's folder (top_layers.safetensors, record.json)")
    tl.add_argument("--router", type=Path, default=None, help="the router whose space it was trained under (default: the default router)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.what == "language-vectors":
        config = load_build_config(args.config)
        print(f"shipped {ship_language_vectors(args.work, load_base_encoder_for(config), config.vector_mode)}")
    elif args.what == "space":
        print(f"shipped {ship_space(args.router, loso=loso_summary(args.loso))}")
    else:
        print(f"shipped {ship_top_layers_model(args.model, args.router)}")


def ship_top_layers_model(model: Path, router: Path | None) -> Path:
    """Ship a trained all-languages top-layer model with its training record and what the paper's
    comparison measured for a model trained the same way on each judge group (sources kept out)."""
    import json

    from benchmarks.sprachbund_encoders import judged_files
    from sprachbund_router.paths import default_router_dir
    from training.shipped import ship_top_layers

    record = json.loads((model / "record.json").read_text())
    measured = {}
    for label, file in judged_files().items():
        result = json.loads(file.read_text())
        space, alone = result["summary"]["systems"]["the router's space"], result["summary"]["systems"]["all"]
        measured[label] = {"file": file.name, "steps": result["settings"]["steps"], "space": space["interface"],
                           "all": alone["interface"], "all minus space": round(alone["interface"] - space["interface"], 2)}
    record["summary"] = {k: record.get(k) for k in ("best_step", "best_dev", "pairs", "seconds", "device")}
    record["judged"] = measured
    shipped = ship_top_layers(model, router or default_router_dir(), record)
    # the cost and curve of what ships, beside the other results (the artifact's JSON holds the same record)
    (RESULTS / "top_layers_shipped.json").write_text(json.dumps(
        {"what": "the all-languages top layers the default router serves: trained on every source's train halves, "
                 "stopped on their dev halves (in-domain), through the default router's space",
         "command": f"python -m benchmarks.sprachbund_encoders --judge none --steps {record['settings']['steps']} "
                    f"--eval-every {record['settings']['eval_every']} --loss {record['settings']['loss']}",
         "artifact": shipped.name, "record": record}, indent=1) + "\n")
    return shipped


if __name__ == "__main__":
    main()
