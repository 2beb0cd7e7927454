"""Measure the vector space side by side: base / centred / +maps (sprachbund, all, random, per language).

``python -m training.space_report [--router DIR] [--output benchmarks/results/space.json] [--ship]``

Every variant is fitted on the training split (and chooses what it chooses on the dev split)
with the same data, then scored on held-out data it never saw:

* **test**: top-1 both directions on the test split of every router language that has one
  (Firefox strings), mean over languages;
* **ood**: the same on VLC's strings (another program; nothing shared with Firefox);
* **cross**: pairs of languages from different sprachbunds, joined on Firefox message ids
  (test split of both), both sides served by the router;
* **table3**: the paper's Table 3 pairs;
* **heads**: emoji-topic heads in the English, pivot and every-language settings.

Vectors are the shared base encoder's, cached on disk, and every variant goes through the
runtime's own :class:`~sprachbund_router.space.VectorSpace`. ``--ship`` copies the default
router's fitted space into ``training/artifacts`` (package data used by ``sbr setup``).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sprachbund_router.paths import cache_root, data_dir, default_router_dir
from sprachbund_router.router import SprachbundRouter
from sprachbund_router.space import SpaceSpec, VectorSpace
from training.corpus import read_bitext, read_ood_pairs, read_pairs
from training.evaluation import TABLE3_PAIRS
from training.space import SpaceSettings, VectorCache, fit_space, random_groups_like, top1_both, unit

logger = logging.getLogger(__name__)

Served = Callable[[str, np.ndarray, bool], np.ndarray]  # (language, raw vectors, as fallback) -> served vectors


def make_space(fitted: Any, groups: Mapping[str, Sequence[str]], settings: SpaceSettings) -> VectorSpace:
    """A runtime space from a fitting result."""
    spec = SpaceSpec(path="spaces/variant.safetensors", centring=settings.centring, missing_mean=settings.missing_mean,  # type: ignore[arg-type]
                     fallback_mean=settings.fallback_mean, anchor=settings.anchor,  # type: ignore[arg-type]
                     sprachbund_maps=dict(fitted.sprachbund_maps))
    return VectorSpace(spec, fitted.means, fitted.maps, {m: g for g, ms in groups.items() for m in ms})


def served_by(space: VectorSpace | None) -> Served:
    """The function that turns raw vectors of a language into a variant's vectors."""
    def serve(lang: str, raw: np.ndarray, fallback: bool = False) -> np.ndarray:
        if space is None:
            return unit(raw)
        n = len(raw)
        return space.apply(raw, [lang] * n, [space.sprachbund_of.get(lang)] * n, [fallback] * n)

    return serve


def cross_pairs(groups: Mapping[str, Sequence[str]], sizes: Mapping[str, int], per_pair: int = 2) -> list[str]:
    """Pairs of languages from different sprachbunds: the ``per_pair`` best-resourced of each."""
    ranked = {g: sorted((m for m in ms if sizes.get(m, 0) >= 100 and m != "en"), key=lambda m: -sizes[m])[:per_pair]
              for g, ms in groups.items()}
    names = sorted(ranked)
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            out += [f"{x}-{y}" for x, y in zip(ranked[a], ranked[b])]
    return out


def run(router_dir: Path, output: Path | None, heads: bool = True) -> dict[str, Any]:
    """Fit every variant and score it; returns the result (also written to ``output``)."""
    started = time.time()
    router = SprachbundRouter.from_pretrained(router_dir)
    cfg = router.config
    groups = cfg.sprachbunds
    corpus = data_dir() / "corpus"
    enc = router.encoder(cfg.shared_encoder)
    cache = VectorCache(lambda texts: enc.encode(texts, batch_size=64), cache_root() / "vectors" / "base.npz")

    test = {lang: read_pairs(corpus, lang, "test") for lang in cfg.languages if lang != "en"}
    test = {lang: p for lang, p in test.items() if len(p) >= 100}
    ood = {lang: read_ood_pairs(corpus, lang) for lang in cfg.languages if lang != "en"}
    ood = {lang: p for lang, p in ood.items() if len(p) >= 100}
    cross = {p: read_bitext(corpus, *p.split("-"), n=1000) for p in cross_pairs(groups, {k: len(v) for k, v in test.items()})}
    cross = {p: b for p, b in cross.items() if len(b) >= 100}
    t3 = {p: read_bitext(corpus, *p.split("-"), n=1000) for p in TABLE3_PAIRS}
    t3 = {p: b for p, b in t3.items() if len(b) >= 100}
    logger.info("encoding held-out sets: %d test languages, %d ood, %d cross pairs, %d Table 3 pairs",
                len(test), len(ood), len(cross), len(t3))

    def raw(pairs: Sequence[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
        return cache([a for a, _ in pairs]), cache([b for _, b in pairs])

    raw_test = {lang: raw(p) for lang, p in test.items()}
    raw_ood = {lang: raw(p) for lang, p in ood.items()}
    raw_cross = {p: raw(b) for p, b in cross.items()}
    raw_t3 = {p: raw(b) for p, b in t3.items()}
    cache.save()

    def score(serve: Served) -> dict[str, Any]:
        per_test = {lang: top1_both(serve(lang, x, False), serve("en", e, False)) for lang, (x, e) in raw_test.items()}
        per_ood = {lang: top1_both(serve(lang, x, False), serve("en", e, False)) for lang, (x, e) in raw_ood.items()}

        def pair_score(p: str, ab: tuple[np.ndarray, np.ndarray]) -> float:
            s, t = p.split("-")
            return top1_both(serve(s, ab[0], False), serve(t, ab[1], False))

        per_cross = {p: pair_score(p, ab) for p, ab in raw_cross.items()}
        per_t3 = {p: pair_score(p, ab) for p, ab in raw_t3.items()}

        def pct(d: Mapping[str, float]) -> dict[str, float]:
            return {k: round(100 * v, 2) for k, v in d.items()}

        return {"test": round(100 * float(np.mean(list(per_test.values()))), 2),
                "ood": round(100 * float(np.mean(list(per_ood.values()))), 2),
                "cross": round(100 * float(np.mean(list(per_cross.values()))), 2),
                "table3": round(100 * float(np.mean(list(per_t3.values()))), 2),
                "per_language": pct(per_test), "per_language_ood": pct(per_ood), "per_cross_pair": pct(per_cross),
                "per_table3_pair": pct(per_t3)}

    variants: dict[str, dict[str, Any]] = {}
    spaces: dict[str, VectorSpace | None] = {}

    def add(name: str, space: VectorSpace | None, what: str, seconds: float = 0.0, extra: dict | None = None) -> None:
        t0 = time.time()
        variants[name] = {"what": what, **score(served_by(space)), "fit_seconds": round(seconds, 1), **(extra or {})}
        spaces[name] = space
        logger.info("%-28s test %.2f  ood %.2f  cross %.2f  table3 %.2f  (%.0fs)", name, variants[name]["test"],
                    variants[name]["ood"], variants[name]["cross"], variants[name]["table3"], time.time() - t0)

    def fitted(name: str, what: str, settings: SpaceSettings, on: Mapping[str, Sequence[str]] = groups) -> Any:
        t0 = time.time()
        f = fit_space(cache, corpus, on, settings)
        cache.save()
        add(name, make_space(f, on, settings), what, time.time() - t0,
            {"maps": {g: c for g, c in f.sprachbund_maps.items()}, "dev": f.report.get("dev")})
        return f

    add("base", None, "the base encoder's vectors, unchanged")
    # ---- centring: sources and sizes of the means
    for source, n in (("interface", 300), ("interface", 100), ("interface", 1000), ("udhr", 300), ("both", 300)):
        fitted(f"centred ({source}, {n})", f"minus the language mean over {n} {source} texts", SpaceSettings(
            mean_source=source, mean_sentences=n, maps="none"))
    centred = fit_space(cache, corpus, groups, SpaceSettings(maps="none"))
    # a language without a mean of its own: its sprachbund's (leave-one-out), the global one, or none
    missing: dict[str, float] = {}
    for policy in ("sprachbund", "global", "none"):
        scores = []
        for lang, (x, e) in raw_test.items():
            means = dict(centred.means)
            means.pop(f"lang:{lang}", None)
            group = next(g for g, ms in groups.items() if lang in ms)
            others = [means[f"lang:{m}"] for m in groups[group] if f"lang:{m}" in means]
            if others:
                means[f"sprachbund:{group}"] = np.mean(others, axis=0)
            s = SpaceSettings(maps="none", missing_mean=policy)
            sp = make_space(type(centred)(means, {}, dict.fromkeys(groups), {}), groups, s)
            serve = served_by(sp)
            scores.append(top1_both(serve(lang, x, False), serve("en", e, False)))
        missing[policy] = round(100 * float(np.mean(scores)), 2)
    # a text that fell back: the global mean or nothing (English side served as usual)
    fallback: dict[str, float] = {}
    for policy in ("global", "none"):
        sp = make_space(centred, groups, SpaceSettings(maps="none", fallback_mean=policy))
        serve = served_by(sp)
        fallback[policy] = round(100 * float(np.mean([top1_both(serve(lang, x, True), serve("en", e, False))
                                                      for lang, (x, e) in raw_test.items()])), 2)

    # ---- maps on top of centring (interface, 300)
    fitted("+ map: all (orthogonal)", "one Procrustes map for all languages", SpaceSettings(maps="all"))
    fitted("+ map: all (ridge)", "one ridge map for all languages", SpaceSettings(maps="all", map_kind="ridge"))
    fitted("+ maps: sprachbund (orthogonal)", "a Procrustes map per sprachbund, no shrinkage",
           SpaceSettings(maps="sprachbund", shrink=[0.0]))
    fitted("+ maps: sprachbund (orth., shrunk)", "per sprachbund, shrunk towards the all map (dev picks the weight)",
           SpaceSettings(maps="sprachbund"))
    fitted("+ maps: sprachbund (ridge, shrunk)", "ridge map per sprachbund, shrunk towards the all map",
           SpaceSettings(maps="sprachbund", map_kind="ridge"))
    fitted("+ maps: sprachbund auto", "per sprachbund: own map, the all map or none, chosen on dev (the default router)",
           SpaceSettings(maps="auto"))
    for seed in (1, 2, 3):
        rnd = random_groups_like(groups, seed)
        fitted(f"+ maps: random{seed} (orth., shrunk)", f"random groups of the sprachbunds' sizes (seed {seed})",
               SpaceSettings(maps="sprachbund"), rnd)
        fitted(f"+ maps: random{seed} auto", f"random groups (seed {seed}), same procedure as the default",
               SpaceSettings(maps="auto"), rnd)
    per_lang = {lang: [lang] for lang in sorted({m for ms in groups.values() for m in ms})}
    fitted("+ maps: per language (orth.)", "a Procrustes map per language, no shrinkage", SpaceSettings(maps="sprachbund",
           shrink=[0.0]), per_lang)
    fitted("+ maps: per language (shrunk)", "a map per language, shrunk towards the all map", SpaceSettings(maps="sprachbund"),
           per_lang)

    for kind in ("orth., shrunk", "auto"):
        rs = [variants[f"+ maps: random{s} {kind}"] for s in (1, 2, 3)]
        variants[f"+ maps: random mean ({kind})"] = {
            "what": f"mean of the three random-group variants ({kind})",
            **{k: round(float(np.mean([r[k] for r in rs])), 2) for k in ("test", "ood", "cross", "table3")}}

    result: dict[str, Any] = {
        "task": "vector space of the default router",
        "router": str(router_dir),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, Python {platform.python_version()}",
        "command": "python -m training.space_report",
        "metric": "top-1 accuracy (%), mean of both directions; 'test' = mean over languages",
        "data": {"test_languages": sorted(test), "ood_languages": sorted(ood), "cross_pairs": sorted(cross),
                 "table3_pairs": sorted(t3), "test": "Firefox test split (English texts hashed into dev/test/train)",
                 "ood": "VLC strings (Debian vlc-l10n), nothing shared with Firefox"},
        "missing_mean_policy": missing,
        "fallback_mean_policy": fallback,
        "variants": variants,
    }
    if heads:
        result["heads"] = heads_side_by_side(router, corpus, cache, {k: spaces[k] for k in (
            "base", "centred (interface, 300)", "+ map: all (orthogonal)", "+ maps: sprachbund auto")})
        cache.save()
    result["seconds"] = round(time.time() - started, 1)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    return result


def heads_side_by_side(router: SprachbundRouter, corpus: Path, cache: VectorCache,
                       spaces: Mapping[str, VectorSpace | None]) -> dict[str, Any]:
    """Emoji-topic heads in the three settings on each variant's vectors (mean accuracy, %)."""
    import tempfile

    from sprachbund_router.heads import ClassificationHead
    from training.heads import FALLBACK, HeadTrainingConfig, train_heads

    cfg = router.config
    out: dict[str, Any] = {}
    for name, space in spaces.items():
        serve = served_by(space)

        def embed(group: str, lang: str, texts: list[str], _serve: Served = serve) -> np.ndarray:
            return _serve(lang, cache(texts), group == FALLBACK)

        with tempfile.TemporaryDirectory() as tmp:
            heads = train_heads(corpus, cfg.sprachbunds, cfg.pivots, embed, Path(tmp) / "heads",
                                HeadTrainingConfig(max_per_language=200, max_test_per_language=100))
            for task, per_group in heads.items():
                if ":" not in task:
                    continue
                per_lang: dict[str, float] = {}
                for p in per_group.values():
                    per_lang.update({k: v for k, v in ClassificationHead.load(Path(tmp) / p).config.metrics.items() if k != "mean"})
                out.setdefault(task.split(":")[1], {})[name] = round(100 * float(np.mean(list(per_lang.values()))), 2)
    return out


def markdown(result: Mapping[str, Any]) -> str:
    """The side-by-side table of a result."""
    lines = ["| variant | test (mean over languages) | out-of-domain | cross-sprachbund | Table 3 pairs |",
             "|---|---|---|---|---|"]
    base = result["variants"]["base"]
    for name, v in result["variants"].items():
        cells = [f"{v[k]:.2f} ({v[k] - base[k]:+.2f})" if name != "base" else f"{v[k]:.2f}" for k in ("test", "ood", "cross", "table3")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--router", type=Path, default=None, help="router directory (default: the embedded default router)")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/space.json"))
    parser.add_argument("--no-heads", action="store_true", help="skip the emoji-topic heads")
    parser.add_argument("--ship", action="store_true", help="copy the router's fitted space into training/artifacts and stop")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    router_dir = args.router or default_router_dir()
    if args.ship:
        from training.space import ship_space

        logger.info("shipped %s", ship_space(router_dir))
        return
    result = run(router_dir, args.output, heads=not args.no_heads)
    logger.info("\n%s", markdown(result))
    logger.info("missing-mean policy: %s; fallback-mean policy: %s", result["missing_mean_policy"], result["fallback_mean_policy"])
    if "heads" in result:
        logger.info("heads: %s", json.dumps(result["heads"]))


if __name__ == "__main__":
    main()
