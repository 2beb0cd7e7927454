"""Choose the pooling layer (and text prefix) of an encoder by measurement.

The paper pools the 7th of XLM-R's 12 layers for retrieval; a contrastively trained encoder
such as multilingual-e5 is best read at or near its last layer. :func:`select_layer` scores
every ``hidden_states`` entry on held-out translated pairs (top-1 accuracy, both
directions) and returns the table with the winner.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

from sprachbund_router.encoder import SentenceEncoder
from training.metrics import bidirectional_accuracy

logger = logging.getLogger(__name__)


def select_layer(
    encoder: SentenceEncoder,
    pairs: Mapping[str, Sequence[tuple[str, str]]],
    layers: Sequence[int] | None = None,
    prefixes: Sequence[str] = ("",),
    batch_size: int = 64,
) -> dict:
    """Score layers x prefixes on aligned pairs; returns ``{"best": {...}, "table": [...]}``.

    Args:
        encoder: the encoder to measure (left as it is: each prefix runs on a sibling, :meth:`with_prefix`).
        pairs: language -> (text, English) pairs (dev split).
        layers: ``hidden_states`` indices to try (default: all).
        prefixes: text prefixes to try (e.g. ``("", "query: ")`` for e5).
    """
    if not pairs:
        raise ValueError("layer selection needs aligned pairs for at least one language")
    layers = list(layers) if layers is not None else list(range(encoder.num_layers + 1))
    table = []
    for prefix in prefixes:
        prefixed = encoder.with_prefix(prefix)
        per_layer: dict[int, list[float]] = {layer: [] for layer in layers}
        per_lang: dict[int, dict[str, float]] = {layer: {} for layer in layers}
        for lang, lp in pairs.items():
            xx = prefixed.encode_layers([p[0] for p in lp], layers, batch_size)
            en = prefixed.encode_layers([p[1] for p in lp], layers, batch_size)
            for layer in layers:
                acc = bidirectional_accuracy(xx[layer], en[layer])["mean"]
                per_layer[layer].append(acc)
                per_lang[layer][lang] = round(acc, 4)
        for layer in layers:
            table.append({"layer": layer, "prefix": prefix, "top1": round(float(np.mean(per_layer[layer])), 4),
                          "per_language": per_lang[layer]})
    best = max(table, key=lambda r: (r["top1"], r["layer"]))
    logger.info("best layer %d prefix %r: top-1 %.3f", best["layer"], best["prefix"], best["top1"])
    return {
        "best": {"layer": best["layer"], "prefix": best["prefix"], "top1": best["top1"]},
        "languages": sorted(pairs),
        "pairs_per_language": {lang: len(p) for lang, p in pairs.items()},
        "metric": "top-1 accuracy, mean of xx->en and en->xx, cosine of masked-mean vectors",
        "table": [{k: v for k, v in r.items() if k != "per_language"} for r in table],
        "per_language": {f"{r['layer']}|{r['prefix']}": r["per_language"] for r in table},
    }
