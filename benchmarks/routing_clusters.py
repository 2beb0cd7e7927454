"""Routing-aware sprachbunds (issue: routing you can trust, item 4), measured.

The representation sprachbunds of a router are recomputed with must-link constraints: languages
the identifier confuses on the dev split (:func:`training.calibration.confusion_links`, e.g. bs/hr/sr,
az/tr, be/uk) must share a sprachbund. For each grouping this reports what the paper's analysis
and routing see:

* agreement with language families (Glottolog-style families, as in the paper's Table 7) and
  with the paper's Table 1 sprachbunds (purity, ARI), and group sizes;
* routing: each identifier backend calibrated on the dev split with the router's rule (lowest
  threshold with <= 3% wrong on 1-2-word strings and <= 1% on sentences, the backend routing most
  short strings right), then right / wrong / fallback per length bucket on the **test** split.

Identifier distributions are computed once per text and reused for every grouping.

    .venv/bin/python -m benchmarks.routing_clusters [ROUTER_DIR] [--rates 0.2,0.1,0.05,0.02] \
        [-o benchmarks/results/routing_clusters.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sprachbund_router.config import RouterConfig, invert_sprachbunds, load_language_vectors
from sprachbund_router.language_id import COMPARED_IDENTIFIERS, make_identifier
from training.analysis import agreement, family_of, paper_group_of
from training.calibration import LINK_BACKEND, THRESHOLDS, choose_threshold, confusion_links, rates, routing_set
from training.sprachbunds import cluster_languages, link_components

logger = logging.getLogger(__name__)

RESULTS = Path(__file__).resolve().parent / "results"


class CachedIdentifier:
    """An identifier whose distributions over a fixed set of texts are computed once."""

    def __init__(self, identifier: Any, texts: Sequence[str]) -> None:
        self.name = identifier.name
        self.languages = list(identifier.languages)
        unique = sorted(set(texts))
        self._rows = {t: i for i, t in enumerate(unique)}
        self._probs = identifier.distribution(unique)

    def distribution(self, texts: Sequence[str]) -> np.ndarray:
        """The cached rows of ``texts`` (each must be one of the texts given at construction)."""
        return self._probs[[self._rows[t] for t in texts]]


def routing_of(groups: dict[str, list[str]], dev: dict[str, tuple[CachedIdentifier, list]],
               test: dict[str, tuple[CachedIdentifier, list]]) -> dict[str, Any]:
    """Calibrate every backend on dev for ``groups``, pick one by the router's rule, report test."""
    where = invert_sprachbunds(groups)
    chosen: dict[str, Any] = {}
    for backend, (ident, data) in dev.items():
        measured = rates(ident, data, where, THRESHOLDS)
        chosen[backend] = choose_threshold(measured, 3.0, 1.0)
    usable = [b for b in chosen if chosen[b] is not None]
    if not usable:
        return {"backend": None}
    best = max(usable, key=lambda b: chosen[b]["1-2 words"]["right"])
    per_backend = {}
    for b in usable:
        ident, data = test[b]
        got = rates(ident, data, where, [chosen[b]["threshold"]])
        per_backend[b] = {"threshold": chosen[b]["threshold"], **{k: v["curve"][0] for k, v in got["buckets"].items()}}
    return {"backend": best, "threshold": chosen[best]["threshold"],
            "dev": {b: v for b, v in chosen[best].items() if b != "threshold"},
            "test": {b: v for b, v in per_backend[best].items() if b != "threshold"},
            "test_per_backend": per_backend,
            "dev_per_backend": {b: (c["1-2 words"] | {"threshold": c["threshold"]}) if c else None for b, c in chosen.items()}}


def run(router_dir: Path, corpus: Path, link_rates: Sequence[float], per_bucket_dev: int = 150,
        per_bucket_test: int = 50, min_counts: Sequence[int] = (1,)) -> dict[str, Any]:
    """Every grouping (as served, plain Ward recomputed, must-link at each rate) side by side."""
    config = RouterConfig.load(router_dir)
    langs, vecs = load_language_vectors(router_dir)
    settings = config.provenance.get("settings", {})
    k = len(config.sprachbunds)
    linkage, centre = settings.get("linkage", "ward"), bool(settings.get("centre", True))
    router_langs = sorted({lang for m in config.sprachbunds.values() for lang in m})
    dev_rows = routing_set(corpus, router_langs, "dev", per_bucket_dev)
    test_rows = routing_set(corpus, router_langs, "test", per_bucket_test)
    dev, test, served_links = {}, {}, {}
    for backend in COMPARED_IDENTIFIERS:
        ident = make_identifier(backend, router_langs, router_dir)
        d, t = dev_rows, test_rows  # every backend on the same texts (a language it cannot name counts against it)
        logger.info("%s: %d dev and %d test texts", backend, len(d), len(t))
        dev[backend] = (CachedIdentifier(ident, [x for _, _, x in d]), d)
        test[backend] = (CachedIdentifier(ident, [x for _, _, x in t]), t)
    families = {lang: family_of(lang) for lang in router_langs}
    table1 = {lang: paper_group_of(lang) for lang in router_langs}

    def describe(groups: dict[str, list[str]], links: list[dict[str, Any]] | None) -> dict[str, Any]:
        out = {"groups": groups, "sizes": sorted((len(m) for m in groups.values()), reverse=True),
               "family_agreement": agreement(groups, families), "paper_table1_agreement": agreement(groups, table1),
               "routing": routing_of(groups, dev, test)}
        if links is not None:
            out["links"] = links
        return out

    variants: dict[str, Any] = {"as served": describe(config.sprachbunds, None)}
    variants["ward, no links (recomputed)"] = describe(cluster_languages(langs, vecs, k, linkage, centre), None)
    ident_name = LINK_BACKEND
    for rate, count in ((r, c) for c in min_counts for r in link_rates):
        ident, data = dev[ident_name]
        links = confusion_links(ident, data, min_rate=rate, min_count=count)
        pairs = [(x["a"], x["b"]) for x in links if x["a"] in langs and x["b"] in langs]
        served_links[rate] = pairs
        comps = link_components(langs, pairs)
        name = f"must-link, confusion >= {rate:g}" + (f", >= {count} sentences" if count > 1 else "")
        if len(comps) < k:
            variants[name] = {"links": links, "error": f"only {len(comps)} components"}
            continue
        groups = cluster_languages(langs, vecs, k, linkage, centre, must_link=pairs)
        variants[name] = describe(groups, links)
    return {"task": "routing-aware sprachbunds", "router": str(router_dir), "k": k,
            "links_from": f"{ident_name} on the dev split (sentences): a -> b when >= rate of a's sentences get b",
            "calibration": "per grouping and backend on the dev split (<= 3% wrong on 1-2 words, <= 1% on sentences); "
                           "the backend routing most 1-2-word strings right; figures on the test split",
            "variants": variants}


def _table(result: dict[str, Any]) -> str:
    lines = ["| grouping | sizes | ARI families | ARI Table 1 | backend @ threshold | 1-2 words right / wrong | "
             "sentences right / wrong |", "|---|---|---|---|---|---|---|"]
    for name, v in result["variants"].items():
        if "error" in v:
            lines.append(f"| {name} | {v['error']} | | | | | |")
            continue
        r = v["routing"]
        if r.get("backend") is None:
            lines.append(f"| {name} | {v['sizes']} | {v['family_agreement']['ari']} | {v['paper_table1_agreement']['ari']} "
                         "| none meets the bounds | | |")
            continue
        s, t = r["test"].get("1-2 words", {}), r["test"].get("sentence", {})
        lines.append(f"| {name} | {' '.join(map(str, v['sizes']))} | {v['family_agreement']['ari']} | "
                     f"{v['paper_table1_agreement']['ari']} | {r['backend']} @ {r['threshold']} | "
                     f"{s.get('right')} / {s.get('wrong')} | {t.get('right')} / {t.get('wrong')} |")
    return "\n".join(lines)


def main() -> None:
    """Command line: measure, print the table, write JSON."""
    from sprachbund_router.paths import data_dir, default_router_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("router_dir", nargs="?", type=Path, default=None)
    parser.add_argument("--rates", default="0.2,0.1,0.05,0.02")
    parser.add_argument("--min-counts", default="1,5", help="Minimum confused dev sentences for a link (each with every rate).")
    parser.add_argument("--corpus", type=Path, default=None)
    parser.add_argument("-o", "--output", type=Path, default=RESULTS / "routing_clusters.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    result = run(args.router_dir or default_router_dir(), args.corpus or data_dir() / "corpus",
                 [float(x) for x in args.rates.split(",")], min_counts=[int(x) for x in args.min_counts.split(",")])
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs"
    result["command"] = f"python -m benchmarks.routing_clusters --rates {args.rates} --min-counts {args.min_counts}"
    print(_table(result))
    args.output.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
