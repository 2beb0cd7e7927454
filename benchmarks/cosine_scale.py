"""The cosine scale of the router's vectors against the plain model's: where translation pairs and
unrelated pairs fall, so that thresholds tuned for e5 (paraphrase mining, community detection,
"similar if above 0.8") are not carried over unchanged.

On the bundled example (120 translated interface sentences in 12 languages and their English
originals): the cosine of each sentence with its own English original (translation pairs) and
with every other original (other pairs), for the default router and for the plain model as its
card says to run it. Writes ``benchmarks/results/cosine_scale.json``.

    .venv/bin/python -m benchmarks.cosine_scale
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmarks.machine import describe

RESULTS = Path(__file__).resolve().parent / "results"
EXAMPLES = Path(__file__).resolve().parents[1] / "sprachbund_router" / "examples"


def stats(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Cosine of row i of ``x`` with row i of ``y`` (translation pairs) and with every other row."""
    s = x @ y.T
    own, other = np.diag(s), s[~np.eye(len(s), dtype=bool)]
    return {"translation_pairs_mean": round(float(own.mean()), 3), "translation_pairs_p10": round(float(np.percentile(own, 10)), 3),
            "other_pairs_mean": round(float(other.mean()), 3), "other_pairs_p99": round(float(np.percentile(other, 99)), 3)}


def main() -> None:
    from sprachbund_router import SprachbundRouter
    from sprachbund_router.config import PoolingConfig
    from sprachbund_router.encoder import SentenceEncoder

    queries = (EXAMPLES / "queries.txt").read_text(encoding="utf-8").splitlines()
    corpus = (EXAMPLES / "corpus.txt").read_text(encoding="utf-8").splitlines()
    router = SprachbundRouter.default(backend="torch")
    base = router.encoder(router.config.shared_encoder)
    card = SentenceEncoder(base.model, base.tokenizer, PoolingConfig(-1, "mean"), text_prefix="query: ", max_length=256)
    result = {
        "task": "cosine of translation pairs and of other pairs: the router's vectors and the plain model's",
        "data": "sprachbund_router/examples: 120 translated interface sentences (12 languages) and their English originals",
        "command": "python -m benchmarks.cosine_scale", "machine": describe(),
        "router": stats(router.encode(queries), router.encode(corpus, lang="en")),
        "plain model as its card says": stats(card.encode(queries), card.encode(corpus)),
    }
    (RESULTS / "cosine_scale.json").write_text(json.dumps(result, indent=1) + "\n")
    print("| vectors | translation pairs (mean) | 10th percentile | other pairs (mean) | 99th percentile |")
    print("|---|---|---|---|---|")
    for name in ("router", "plain model as its card says"):
        r = result[name]
        print(f"| {name} | {r['translation_pairs_mean']} | {r['translation_pairs_p10']} | {r['other_pairs_mean']} "
              f"| {r['other_pairs_p99']} |")


if __name__ == "__main__":
    main()
