"""Leave one source out, run: every held-out source scored with settings chosen on the others,
summarised, and rendered into the README and docs/results/generalisation.md.

The protocol itself (data, candidates, fitting, choosing) is :mod:`training.loso`; this module
runs it over every built source, writes ``benchmarks/results/loso.json`` and generates the tables.

    python -m benchmarks.loso [--sources ...] [--out benchmarks/results/loso.json]
    python -m benchmarks.loso --render      # only rewrite the generated tables from --out
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import training.loso as protocol
from sprachbund_router.space import unit
from training.loso import (
    CAPS,
    CARD,
    LAYERS,
    PREFIXES,
    STAGES,
    Choice,
    Data,
    Experiment,
    LayerVectors,
    _interleave,
    macro,
    plain,
    run,
)

logger = logging.getLogger(__name__)


#: The protocol's results.
LOSO_RESULTS = Path(__file__).resolve().parent / "results" / "loso.json"


def loso_summary(path: Path = LOSO_RESULTS) -> dict[str, Any]:
    """What the router config records of the leave-one-source-out protocol: the sources, the
    choice, and the out-of-source means against the plain model (empty when not run)."""
    import json

    if not path.is_file():
        return {}
    stored = json.loads(path.read_text())
    s = stored.get("summary", {})
    return {"results": "benchmarks/results/loso.json", "chosen": stored.get("results", {}).get("shipped", {}).get("chosen"),
            "interface_sources": s.get("interface_sources"), "prose_sources": s.get("prose_sources"),
            "interface_top1": {k: round(v, 2) for k, v in s.get("interface", {}).items()
                               if k in ("card", "best_plain_by_dev", "best_plain_hindsight", "router")},
            "prose_top1": {k: round(v, 2) for k, v in s.get("prose", {}).items() if k in ("card", "router")},
            "per_source": {src: {"kind": r.get("kind"), "languages": r.get("languages"),
                                 **{k: round(r[k], 2) for k in ("card", "best_plain_by_dev", "router") if k in r}}
                           for src, r in s.get("per_source", {}).items()},
            "protocol": "each source's test half scored with settings chosen on the other sources' dev halves"}


def summarise(results: Mapping[str, Any], no_libreoffice: Sequence[str]) -> dict[str, Any]:
    """Per source and overall: card baseline, best plain (by dev and in hindsight), the router and
    the compared variants; mean and worst interface source; the lowest quarter of languages by
    card score; languages without LibreOffice pairs. Top-1 in percent."""
    card_label = plain(CARD["layer"], CARD["prefix"]).label()
    folds = results["folds"]
    rows = {}
    card_by_lang: dict[str, list[float]] = {}
    for s, fold in folds.items():
        plain_test = results["plain_test"][s]
        hindsight = max(plain_test, key=lambda k: macro(plain_test[k]))
        rows[s] = {"kind": fold["kind"], "languages": len(fold["router"]),
                   "card": 100 * macro(fold["card"]), "best_plain_by_dev": 100 * macro(fold["best_plain_by_dev"]["scores"]),
                   "best_plain_by_dev_label": fold["best_plain_by_dev"]["label"],
                   "best_plain_hindsight": 100 * macro(plain_test[hindsight]), "hindsight_label": hindsight,
                   "router": 100 * macro(fold["router"]), "router_label": fold["label"],
                   "compared": {k: 100 * macro(v) for k, v in fold.get("compared", {}).items()}}
        if fold["kind"] == "interface":
            for lang, v in fold["card"].items():
                card_by_lang.setdefault(lang, []).append(v)
    card_mean = {lang: float(np.mean(v)) for lang, v in card_by_lang.items()}
    ranked = sorted(card_mean, key=card_mean.get)  # type: ignore[arg-type]
    lowest = sorted(ranked[: max(1, len(ranked) // 4)])

    def per_fold_scores(fold: Mapping[str, Any], s: str) -> dict[str, Mapping[str, float]]:
        plain_test = results["plain_test"][s]
        out = {"card": fold["card"], "router": fold["router"], "best_plain_by_dev": fold["best_plain_by_dev"]["scores"],
               "best_plain_hindsight": plain_test[rows[s]["hindsight_label"]]}
        out.update(fold.get("compared", {}))
        return out

    def subset(langs: Sequence[str] | None, kind: str = "interface") -> dict[str, float]:
        """Mean over sources of the kind of each system's mean over ``langs`` (None: all)."""
        vals: dict[str, list[float]] = {}
        for s, fold in folds.items():
            if fold["kind"] != kind:
                continue
            for key, scores in per_fold_scores(fold, s).items():
                picked = [v for lang, v in scores.items() if langs is None or lang in langs]
                if picked:
                    vals.setdefault(key, []).append(float(np.mean(picked)))
        return {k: 100 * float(np.mean(v)) for k, v in vals.items()}

    interface = {s: r for s, r in rows.items() if r["kind"] == "interface"}
    prose = {s: r for s, r in rows.items() if r["kind"] == "prose"}

    def gain(r: Mapping[str, Any], over: str) -> float:
        base = max(r["best_plain_by_dev"], r["best_plain_hindsight"]) if over == "best plain" else r["card"]
        return float(r["router"] - base)

    return {
        "per_source": rows,
        "interface": subset(None),
        "prose": subset(None, "prose"),
        "interface_sources": len(interface),
        "prose_sources": len(prose),
        "worst_interface_gain": {"over card": min(gain(r, "card") for r in interface.values()),
                                 "over best plain": min(gain(r, "best plain") for r in interface.values())},
        "worst_prose_gain_over_card": min((gain(r, "card") for r in prose.values()), default=float("nan")),
        "lowest_quarter": {"languages": lowest, **subset(lowest)},
        "without_libreoffice": {"languages": sorted(no_libreoffice), **subset(sorted(no_libreoffice))},
        "card_label": card_label,
        "shipped": results.get("shipped", {}).get("label"),
    }


SYSTEM_NAMES = {
    "card": "the plain model as its card says (last layer, mean, `query: `)",
    "best_plain_by_dev": "best plain configuration, chosen on the other sources' dev",
    "best_plain_hindsight": "best plain configuration in hindsight (on this test half)",
    "router": "**the router** (every setting chosen on the other sources)",
    "no space (chosen layer and prefix)": "router's layer and prefix, no space",
    "centring only": "router's layer and prefix, centring only",
    "subspace removal only": "router's layer and prefix, subspace removal only",
    "maps=none": "router with maps: none",
    "maps=all": "router with maps: one for all languages",
    "maps=sprachbund": "router with maps: one per sprachbund",
    "maps=random": "router with maps: one per random group (sprachbund sizes)",
    "maps=language": "router with maps: per language, shrunk to its sprachbund",
    "maps=language-random": "router with maps: per language, shrunk to its random group",
    "cosine scoring": "router, cosine scoring",
    "margin scoring": "router, ratio-margin scoring (k = 10)",
}


def render_headline(summary: Mapping[str, Any]) -> str:
    """The README's table: the router against the plain model, out of source."""
    i, p, lq = summary["interface"], summary["prose"], summary["lowest_quarter"]
    best = max(i["best_plain_by_dev"], i["best_plain_hindsight"])
    lines = [
        f"Top-1 (%) of foreign messages among all English messages of a source's test half, each source scored with "
        f"settings chosen on the other sources (leave one source out; {summary['interface_sources']} interface sources, "
        f"{summary['prose_sources']} prose sources; `python -m benchmarks.loso`, 2-core CPU):",
        "",
        "| vectors | interface (mean) | lowest-quarter languages | languages without LibreOffice pairs | prose (mean) |",
        "|---|---|---|---|---|",
    ]
    lines += [_variant_row(summary, key, SYSTEM_NAMES[key]) for key in ("card", "best_plain_by_dev", "best_plain_hindsight", "router")]
    lines += ["", f"Router gain: **{i['router'] - i['card']:+.2f}** over the card's configuration and "
              f"**{i['router'] - best:+.2f}** over the best plain one on interface text (worst source: "
              f"{summary['worst_interface_gain']['over card']:+.2f} / {summary['worst_interface_gain']['over best plain']:+.2f}); "
              f"{lq['router'] - lq['card']:+.2f} on the lowest-quarter languages; {p['router'] - p['card']:+.2f} on prose. "
              f"Shipped setting: {summary['shipped']}."]
    groupings = ("maps=none", "maps=all", "maps=random", "maps=sprachbund", "maps=language", "maps=language-random")
    if all(g in i for g in groupings[:4]):
        lines += ["", "Sprachbund maps against one map for all languages and random groups of the sprachbunds' sizes "
                  "(same data, same fitting, same folds; the router's other settings as chosen):", "",
                  "| maps | interface | lowest quarter | without LibreOffice pairs | prose |", "|---|---|---|---|---|"]
        lines += [_variant_row(summary, key, SYSTEM_NAMES[key].removeprefix("router with maps: ")) for key in groupings if key in i]
        lines += ["", *grouping_finding(summary)]
    return "\n".join(lines)


def render_details(summary: Mapping[str, Any]) -> str:
    """The per-source table and the compared variants (docs/results/generalisation.md)."""
    lines = ["| source | kind | languages | card | best plain (dev) | best plain (hindsight) | router | vs card | vs best plain "
             "| chosen on the other sources |", "|---|---|---|---|---|---|---|---|---|---|"]
    for s, r in summary["per_source"].items():
        best = max(r["best_plain_by_dev"], r["best_plain_hindsight"])
        lines.append(f"| {s} | {r['kind']} | {r['languages']} | {r['card']:.2f} | {r['best_plain_by_dev']:.2f} | "
                     f"{r['best_plain_hindsight']:.2f} | {r['router']:.2f} | {r['router'] - r['card']:+.2f} | "
                     f"{r['router'] - best:+.2f} | {r['router_label']} |")
    lines += ["", "Variants of the router on the same folds (each changes one part of the chosen setting; same data, "
              "same fitting):", "",
              "| system | interface | lowest quarter | without LibreOffice | prose |", "|---|---|---|---|---|"]
    lines += [_variant_row(summary, key, name) for key, name in SYSTEM_NAMES.items() if key in summary["interface"]]
    lines += ["", *findings(summary)]
    return "\n".join(lines)


def _variant_row(summary: Mapping[str, Any], key: str, name: str) -> str:
    """One variant's table row: interface, lowest quarter, without LibreOffice, prose."""
    cells = [summary[part].get(key, float("nan")) for part in ("interface", "lowest_quarter", "without_libreoffice", "prose")]
    return f"| {name} | " + " | ".join(f"{c:.2f}" for c in cells) + " |"


def _diff(where: Mapping[str, float], a: str, b: str) -> float:
    return float(where.get(a, float("nan")) - where.get(b, float("nan")))


def grouping_finding(summary: Mapping[str, Any]) -> list[str]:
    """Sprachbund maps against one map for all and random groups, in words (empty without those variants)."""
    i, lq = summary["interface"], summary["lowest_quarter"]
    if not ("maps=sprachbund" in i and "maps=random" in i and "maps=all" in i):
        return []

    def word(d: float) -> str:
        return "beat" if d > 0.1 else "lose to" if d < -0.1 else "tie"

    sb_all, sb_rnd = _diff(i, "maps=sprachbund", "maps=all"), _diff(i, "maps=sprachbund", "maps=random")
    lq_all, lq_rnd = _diff(lq, "maps=sprachbund", "maps=all"), _diff(lq, "maps=sprachbund", "maps=random")
    return [f"- **Sprachbund maps against \"all\" and \"random\"** (same data, same fitting): {sb_all:+.2f} over one "
            f"map for all languages and {sb_rnd:+.2f} over random groups of the same sizes on interface text; on the "
            f"lowest-quarter languages {lq_all:+.2f} and {lq_rnd:+.2f}. Said plainly: sprachbund maps {word(sb_all)} "
            f"one map for all and {word(sb_rnd)} random groups (lowest quarter: {word(lq_all)} all, {word(lq_rnd)} "
            f"random); the gain comes from having maps ({_diff(i, 'maps=sprachbund', 'maps=none'):+.2f} over none), not "
            f"from the sprachbund grouping."]


def findings(summary: Mapping[str, Any]) -> list[str]:
    """What the variants say, in words (generated, so it cannot drift from the table)."""
    i = summary["interface"]
    out = grouping_finding(summary)

    def diff(a: str, b: str, where: Mapping[str, float] = i) -> float:
        return _diff(where, a, b)

    if "maps=language" in i:
        out.append(f"- **Per-language maps** shrunk to their sprachbund's: {diff('maps=language', 'maps=sprachbund'):+.2f} "
                   f"over sprachbund maps; shrunk to a random group's: {diff('maps=language-random', 'maps=language'):+.2f} "
                   f"over shrinking to the sprachbund's.")
    if "centring only" in i:
        out.append(f"- **Centring** carries over to new programs: {diff('centring only', 'no space (chosen layer and prefix)'):+.2f} "
                   f"over the same layer and prefix without a space; **subspace removal alone** "
                   f"{diff('subspace removal only', 'no space (chosen layer and prefix)'):+.2f}.")
    if "margin scoring" in i:
        out.append(f"- **Ratio-margin scoring** {diff('margin scoring', 'cosine scoring'):+.2f} over cosine on interface text, "
                   f"{diff('margin scoring', 'cosine scoring', summary['prose']):+.2f} on prose.")
    out.append(f"- **The prefix and the layer**: the plain model without `query: ` beats it as its card runs it by "
               f"{diff('best_plain_by_dev', 'card'):+.2f} on interface text; the base was weakened before, not the router.")
    return out


def replace_block(text: str, name: str, block: str) -> str:
    """``text`` with the lines between ``<!-- name -->`` and ``<!-- /name -->`` replaced by ``block``."""
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    if start not in text or end not in text:
        raise ValueError(f"no {start} ... {end} block")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{block}\n{end}{tail}"


def render_files(summary: Mapping[str, Any], readme: Path, details: Path) -> None:
    """Write the generated tables into the README and docs/results/generalisation.md."""
    readme.write_text(replace_block(readme.read_text(encoding="utf-8"), "loso:headline", render_headline(summary)), encoding="utf-8")
    details.write_text(replace_block(details.read_text(encoding="utf-8"), "loso:details", render_details(summary)), encoding="utf-8")


def seed_space_cache(choice: Choice, directory: Path) -> int:
    """Put the protocol's cached vectors of ``choice``'s layer and prefix into the cache the space
    build reads (``training.space.VectorCache`` of the served encoder), so fitting the shipped
    space encodes nothing the protocol already encoded. Returns the number of vectors added."""
    from sprachbund_router.config import EncoderSpec, PoolingConfig
    from sprachbund_router.encoder import SentenceEncoder
    from sprachbund_router.paths import cache_root
    from training.base_model import base_model_dir
    from training.space import VectorCache

    encoder = SentenceEncoder.from_pretrained(base_model_dir(), PoolingConfig(-1, "mean"), EncoderSpec(path="base", max_length=256))
    layers = LayerVectors(encoder, choice.prefix, directory)
    served = SentenceEncoder(encoder.model, encoder.tokenizer, PoolingConfig(choice.layer, "mean"), text_prefix=choice.prefix,
                             max_length=256)
    cache = VectorCache(lambda texts: served.encode(texts, batch_size=64), cache_root() / "vectors" / "base.npz")
    li = LAYERS.index(choice.layer)
    keys = sorted(layers.rows, key=layers.rows.get)  # type: ignore[arg-type]
    table = layers.table[:, li].astype(np.float32)
    table = unit(table)
    added = cache.add_keyed(keys, table)
    if added:
        cache(["The cat sleeps on the sofa."])  # concatenates the parts before saving
    cache.save()
    return added


def main() -> None:
    """Command line: encode every source (cached), run the protocol, print the table, write JSON."""
    from sprachbund_router.config import EncoderSpec, PoolingConfig, RouterConfig
    from sprachbund_router.encoder import SentenceEncoder
    from sprachbund_router.paths import cache_root, data_dir, default_router_dir
    from training.base_model import base_model_dir, ensure_base_model
    from training.held_out_sources import ensure_sources

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sources", default=None, help="Comma-separated (default: every built source).")
    parser.add_argument("--out", default="benchmarks/results/loso.json")
    parser.add_argument("--stages", default=None, help="Comma-separated stage names to run (default: all).")
    parser.add_argument("--languages", default=None, help="Comma-separated (default: the default router's).")
    parser.add_argument("--seed-space-cache", action="store_true",
                        help="Copy the cached vectors of the shipped choice (--out) into the space build's cache.")
    parser.add_argument("--render", action="store_true",
                        help="Only rewrite the README's and docs/results/generalisation.md's tables from --out (no computing).")
    args = parser.parse_args()
    if args.seed_space_cache:
        stored = json.loads(Path(args.out).read_text())
        choice = Choice.from_record(stored["results"]["shipped"]["chosen"])
        print(f"{seed_space_cache(choice, cache_root() / 'loso')} vectors of {choice.label()} added to the space cache")
        return
    if args.render:
        stored = json.loads(Path(args.out).read_text())
        summary = summarise(stored["results"], stored["summary"]["without_libreoffice"]["languages"])
        stored["summary"] = summary
        Path(args.out).write_text(json.dumps(stored, indent=1, default=str) + "\n")
        root = Path(__file__).resolve().parents[1]
        render_files(summary, root / "README.md", root / "docs" / "results" / "generalisation.md")
        print(render_headline(summary))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started = time.perf_counter()
    corpus = data_dir() / "corpus"
    cfg = RouterConfig.load(default_router_dir())
    manifest = ensure_sources(corpus, cfg.languages)
    sources = args.sources.split(",") if args.sources else sorted(manifest["sources"])
    languages = args.languages.split(",") if args.languages else cfg.languages
    data = Data.load(corpus, sources, languages, cfg.language_to_sprachbund, CAPS)
    ensure_base_model()
    encoder = SentenceEncoder.from_pretrained(base_model_dir(), PoolingConfig(-1, "mean"), EncoderSpec(path="base", max_length=256))
    vectors = {p: LayerVectors(encoder, p, cache_root() / "loso") for p in PREFIXES}
    vectors[""].ensure(data.texts())
    # with the other prefix: dev and test, and the training texts the first stage's means take (in one
    # pass, not language by language); further training texts are encoded if a chosen candidate needs them
    start = Choice()
    mean_texts = []
    for lang in languages:
        parts = [[x for x, _ in data.rows[s]["train"].get(lang, [])] for s in data.sources]
        mean_texts += _interleave([p for p in parts if p], start.mean_sentences)
    mean_texts += _interleave([[e for _, e in p] for s in data.sources for p in data.rows[s]["train"].values()],
                              start.mean_sentences * 4)
    vectors["query: "].ensure([*data.texts(("dev", "test")), *mean_texts])
    stages = [st for st in STAGES if not args.stages or st[0] in args.stages.split(",")]
    exp = Experiment(data, vectors)
    try:
        results = run(exp, stages)
    finally:
        for v in vectors.values():
            v.save()
    no_lo = [lang for lang in languages if lang != "en" and not data.rows.get("libreoffice", {}).get("train", {}).get(lang)]
    summary = summarise(results, no_lo)
    out = {"summary": summary, "results": results, "sources": {s: manifest["sources"][s] for s in sources},
           "protocol": protocol.__doc__, "seconds": round(time.perf_counter() - started, 1),
           "machine": "2-core CPU (no GPU)", "command": "python -m benchmarks.loso"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1, default=str) + "\n")
    print(render_headline(summary))
    print(render_details(summary))


if __name__ == "__main__":
    main()
