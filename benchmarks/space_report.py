"""Measure the vector space side by side: base / centred / +maps (sprachbund, all, random, per language).

``python -m benchmarks.space_report [--router DIR] [--output benchmarks/results/space.json]``

Every variant is fitted on the training split (and chooses what it chooses on the dev split)
with the same data, then scored on held-out data it never saw (:mod:`training.held_out_eval`:
the test, out-of-domain, help, cross-sprachbund and Table 3 sets), plus emoji-topic heads in
the English, pivot and every-language settings.

Vectors are the shared base encoder's, cached on disk, and every variant goes through the
runtime's own :class:`~sprachbund_router.space.VectorSpace`. ``python -m
benchmarks.ship_artifacts space DIR`` copies a router's fitted space into ``training/artifacts`` (package data used
by ``sbr setup``).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from sprachbund_router.config import invert_sprachbunds
from sprachbund_router.paths import cache_root, data_dir, default_router_dir
from sprachbund_router.space import VectorSpace
from training.held_out_eval import SET_NAMES, Served, held_out_sets, make_space, score_sets, served_by
from training.space import SpaceSettings, VectorCache, ensure_space_data, fit_space, top1_both
from training.sprachbunds import random_groups

logger = logging.getLogger(__name__)

#: Shrinkage weights the variants with extra pairs choose from on dev (finer than the default grid).
FINE_SHRINK = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 8.0)


class SpaceReport:
    """The variants of one router's space, fitted and scored in the report's order."""

    def __init__(self, cfg: Any, router_dir: Path | None, corpus: Path, cache: VectorCache, n: int = 1000,
                 extra: Sequence[str] = (), max_extra: int = 2000) -> None:
        self.cfg, self.router_dir, self.corpus, self.cache, self.n, self.extra = cfg, router_dir, corpus, cache, n, list(extra)
        self.max_extra = max_extra
        self.groups = cfg.sprachbunds
        if self.extra:  # the data stage: fitting itself fetches nothing
            ensure_space_data(self.corpus, self.groups, SpaceSettings(maps="all", extra_pairs=self.extra))
        self.sets = held_out_sets(self.corpus, cfg.languages, self.groups, n)
        logger.info("encoding held-out sets: %s", {k: len(v) for k, v in self.sets.items()})
        for items in self.sets.values():
            for _, _, pairs in items.values():
                self.cache([t for pair in pairs for t in pair])
        self.cache.save()
        self.variants: dict[str, dict[str, Any]] = {}
        self.spaces: dict[str, VectorSpace | None] = {}

    def add(self, name: str, space: VectorSpace | None, what: str, seconds: float = 0.0, extra: dict | None = None) -> None:
        """Score one variant on every set."""
        t0 = time.time()
        serve = served_by(space)
        scores = score_sets(lambda key, lang, texts: serve(lang, self.cache(texts), False), self.sets)
        self.variants[name] = {"what": what, **scores, "fit_seconds": round(seconds, 1), **(extra or {})}
        self.spaces[name] = space
        logger.info("%-40s %s (%.0fs)", name, "  ".join(f"{k} {scores[k]:.2f}" for k in SET_NAMES
                                                      if scores.get(k) is not None), time.time() - t0)

    def fitted(self, name: str, what: str, settings: SpaceSettings, on: Mapping[str, Sequence[str]] | None = None) -> Any:
        """Fit a variant on the training split (``on``: its groups, default the sprachbunds) and score it."""
        on = on or self.groups
        t0 = time.time()
        f = fit_space(self.cache, self.corpus, on, settings)
        self.cache.save()
        self.add(name, make_space(f, on, settings), what, time.time() - t0,
                 {"maps": dict(f.sprachbund_maps), "dev": f.report.get("dev")})
        return f

    def shipped(self, encoder: Any) -> None:
        """The base's vectors and the router's own space files, as served (checked against ``encoder``)."""
        self.add("base", None, "the base encoder's vectors, unchanged")
        where = invert_sprachbunds(self.groups)
        for name, spec in self.cfg.spaces.items():
            space = VectorSpace.load(self.router_dir, spec, where)
            space.check_encoder(encoder, "torch", name)
            self.add(f"router as built ({name} space)", space, "the router's own space file, as served",
                     extra={"maps": dict(spec.sprachbund_maps)})

    def centring(self) -> None:
        """Sources and sizes of the language means."""
        for source, size in (("interface", 300), ("interface", 30), ("interface", 100), ("udhr", 300)):
            self.fitted(f"centred ({source}, {size})", f"minus the language mean over {size} {source} texts", SpaceSettings(
                mean_source=source, mean_sentences=size, maps="none"))

    @cached_property
    def centred(self) -> Any:
        """Centring alone (interface, 300): the fit both mean-policy steps start from."""
        return fit_space(self.cache, self.corpus, self.groups, SpaceSettings(maps="none"))

    def missing_mean_policies(self) -> dict[str, float]:
        """A language without a mean of its own: its sprachbund's (leave-one-out), the global one, or none."""
        groups, cache = self.groups, self.cache
        centred = self.centred
        out: dict[str, float] = {}
        for policy in ("sprachbund", "global", "none"):
            scores = []
            for lang, (_, _, pairs) in self.sets["test"].items():
                means = dict(centred.means)
                means.pop(f"lang:{lang}", None)
                group = next(g for g, ms in groups.items() if lang in ms)
                others = [means[f"lang:{m}"] for m in groups[group] if f"lang:{m}" in means]
                if others:
                    means[f"sprachbund:{group}"] = np.mean(others, axis=0)
                space = make_space(type(centred)(means, {}, dict.fromkeys(groups), {}), groups,
                                   SpaceSettings(maps="none", missing_mean=policy))
                serve = served_by(space)
                scores.append(top1_both(serve(lang, cache([p[0] for p in pairs]), False),
                                        serve("en", cache([p[1] for p in pairs]), False)))
            out[policy] = round(100 * float(np.mean(scores)), 2)
        return out

    def fallback_policies(self) -> dict[str, float]:
        """A text that fell back: the global mean or nothing (the English side served as usual)."""
        centred = self.centred
        out: dict[str, float] = {}
        for policy in ("global", "none"):
            serve = served_by(make_space(centred, self.groups, SpaceSettings(maps="none", fallback_mean=policy)))
            out[policy] = round(100 * float(np.mean([
                top1_both(serve(lang, self.cache([p[0] for p in pairs]), True), serve("en", self.cache([p[1] for p in pairs]), False))
                for lang, (_, _, pairs) in self.sets["test"].items()])), 2)
        return out

    def maps(self) -> None:
        """Maps on top of centring (interface, 300): all, per sprachbund, random groups, per language."""
        fitted = self.fitted
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
            rnd = random_groups(self.groups, seed)
            fitted(f"+ maps: random{seed} (orth., shrunk)", f"random groups of the sprachbunds' sizes (seed {seed})",
                   SpaceSettings(maps="sprachbund"), rnd)
            fitted(f"+ maps: random{seed} auto", f"random groups (seed {seed}), same procedure as the default",
                   SpaceSettings(maps="auto"), rnd)
        fitted("+ maps: per language (orth.)", "a Procrustes map per language, no shrinkage", SpaceSettings(maps="sprachbund",
               shrink=[0.0]), self.per_language)
        fitted("+ maps: per language (shrunk)", "a map per language, shrunk towards the all map", SpaceSettings(maps="sprachbund"),
               self.per_language)

    @property
    def per_language(self) -> dict[str, list[str]]:
        return {lang: [lang] for lang in sorted({m for ms in self.groups.values() for m in ms})}

    @property
    def tag(self) -> str:
        return f"+{'+'.join(self.extra)} {self.max_extra}"

    def extra_maps(self) -> None:
        """The same map variants with ``max_extra`` more training pairs per language from the extra sources."""
        more = {"extra_pairs": self.extra, "max_extra_pairs": self.max_extra, "shrink": list(FINE_SHRINK)}
        tag, fitted = self.tag, self.fitted
        fitted(f"{tag}: map all", "one Procrustes map for all languages", SpaceSettings(maps="all", **more))
        fitted(f"{tag}: maps sprachbund (orth.)", "a Procrustes map per sprachbund, no shrinkage",
               SpaceSettings(maps="sprachbund", **more | {"shrink": [0.0]}))
        fitted(f"{tag}: maps sprachbund (orth., shrunk)", "per sprachbund, shrunk towards the all map (dev picks the weight)",
               SpaceSettings(maps="sprachbund", **more))
        fitted(f"{tag}: maps sprachbund auto", "per sprachbund: own map, the all map or none, chosen on dev",
               SpaceSettings(maps="auto", **more))
        for seed in (1, 2, 3):
            rnd = random_groups(self.groups, seed)
            fitted(f"{tag}: maps random{seed} (orth., shrunk)", f"random groups of the sprachbunds' sizes (seed {seed})",
                   SpaceSettings(maps="sprachbund", **more), rnd)
            fitted(f"{tag}: maps random{seed} auto", f"random groups (seed {seed}), same procedure as the default",
                   SpaceSettings(maps="auto", **more), rnd)
        fitted(f"{tag}: maps per language (shrunk)", "a map per language, shrunk towards the all map",
               SpaceSettings(maps="sprachbund", **more), self.per_language)

    def random_means(self) -> None:
        """The mean of the three random-group variants of each kind."""
        for prefix in ["+ maps:"] + ([f"{self.tag}: maps"] if self.extra else []):
            for kind, key in (("orth., shrunk", "(orth., shrunk)"), ("auto", "auto")):
                rs = [self.variants[f"{prefix} random{s} {key}"] for s in (1, 2, 3)]
                self.variants[f"{prefix} random mean ({kind})"] = {
                    "what": f"mean of the three random-group variants ({kind})",
                    **{k: round(float(np.mean([r[k] for r in rs])), 2) for k in SET_NAMES if rs[0].get(k) is not None},
                    "seeds": {k: [r[k] for r in rs] for k in SET_NAMES if rs[0].get(k) is not None}}

    def record(self, heads: bool) -> dict[str, Any]:
        """The result file's content (without the heads and the time)."""
        sets, n, extra = self.sets, self.n, self.extra
        return {
            "task": "vector space of the default router",
            "router": str(self.router_dir),
            "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, Python {platform.python_version()}",
            "command": f"python -m benchmarks.space_report --n {n}" + ("" if heads else " --no-heads")
                       + (f" --extra {','.join(extra)} --max-extra {self.max_extra}" if extra else ""),
            "metric": "top-1 accuracy (%), mean of both directions; 'test' = mean over languages",
            "pairs_per_set": n,
            "data": {"test_languages": sorted(sets["test"]), "ood_languages": sorted(sets["ood"]), "cross_pairs": sorted(sets["cross"]),
                     "table3_pairs": sorted(sets["table3"]), "test": "Firefox test split (English texts hashed into dev/test/train)",
                     "ood": "VLC strings (Debian vlc-l10n), nothing shared with Firefox",
                     "help_languages": sorted(sets["help"]),
                     "help": "LibreOffice help paragraphs (Debian libreoffice-help-*), never trained on, none equal to a "
                             "training text"},
            "variants": self.variants,
        }


def run(router_dir: Path, output: Path | None, heads: bool = True, corpus: Path | None = None,
        encoder: Any = None, cache_file: Path | None = None, batch_size: int = 64, n: int = 1000,
        extra: Sequence[str] = (), max_extra: int = 2000) -> dict[str, Any]:
    """Fit every variant and score it; returns the result (also written to ``output``).

    ``encoder`` (default: the router's shared encoder, loaded here) gives the base vectors;
    ``corpus`` defaults to the cache's corpus. The router's own space, when it has one, is
    scored as it is ("shipped"). ``extra`` (e.g. ``["libreoffice"]``) adds the map variants
    again with ``max_extra`` more training pairs per language from those sources.
    """
    from sprachbund_router.config import RouterConfig

    started = time.time()
    cfg = RouterConfig.load(router_dir)
    if encoder is None:
        from sprachbund_router.encoder import SentenceEncoder

        spec = cfg.encoders[cfg.shared_encoder]
        encoder = SentenceEncoder.from_pretrained(router_dir / spec.path, cfg.pooling, spec)  # type: ignore[operator]
    enc = encoder
    cache = VectorCache(lambda texts: enc.encode(texts, batch_size=batch_size),
                        cache_file if cache_file is not None else cache_root() / "vectors" / "base.npz")
    report = SpaceReport(cfg, router_dir, corpus or data_dir() / "corpus", cache, n, extra, max_extra)
    report.shipped(encoder)
    report.centring()
    missing, fallback = report.missing_mean_policies(), report.fallback_policies()
    report.maps()
    if extra:  # the same variants with more training pairs per language (equal data for every grouping)
        report.extra_maps()
    report.random_means()
    result = {**report.record(heads), "missing_mean_policy": missing, "fallback_mean_policy": fallback}
    result["variants"] = result.pop("variants")
    if heads:
        names = ["base", "centred (interface, 300)", "+ map: all (orthogonal)", "+ maps: sprachbund auto"]
        names += [f"{report.tag}: map all", f"{report.tag}: maps sprachbund auto"] if extra else []
        result["heads"] = heads_side_by_side(report.cfg, report.corpus, report.cache, {k: report.spaces[k] for k in names})
        report.cache.save()
    result["seconds"] = round(time.time() - started, 1)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    return result


def heads_side_by_side(cfg: Any, corpus: Path, cache: VectorCache,
                       spaces: Mapping[str, VectorSpace | None]) -> dict[str, Any]:
    """Emoji-topic heads in the three settings on each variant's vectors (mean accuracy, %)."""
    import tempfile

    from sprachbund_router.heads import ClassificationHead
    from training.heads import FALLBACK, HeadTrainingConfig, train_heads

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
    base = result["variants"]["base"]
    keys = [k for k in SET_NAMES if base.get(k) is not None]
    titles = {"test": "test (mean over languages)", "ood": "out-of-domain (VLC)", "help": "out-of-domain (help paragraphs)",
              "cross": "cross-sprachbund", "table3": "Table 3 pairs"}
    lines = ["| variant | " + " | ".join(titles[k] for k in keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, v in result["variants"].items():
        cells = [f"{v[k]:.2f} ({v[k] - base[k]:+.2f})" if name != "base" else f"{v[k]:.2f}" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--router", type=Path, default=None, help="router directory (default: the embedded default router)")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/space.json"))
    parser.add_argument("--no-heads", action="store_true", help="skip the emoji-topic heads")
    parser.add_argument("--n", type=int, default=1000, help="pairs per language / language pair (at most)")
    parser.add_argument("--extra", default="", help="extra training-pair sources for more map variants (libreoffice)")
    parser.add_argument("--max-extra", type=int, default=2000, help="extra pairs per language and source")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    router_dir = args.router or default_router_dir()
    result = run(router_dir, args.output, heads=not args.no_heads, n=args.n,
                 extra=[e for e in args.extra.split(",") if e], max_extra=args.max_extra)
    logger.info("\n%s", markdown(result))
    logger.info("missing-mean policy: %s; fallback-mean policy: %s", result["missing_mean_policy"], result["fallback_mean_policy"])
    if "heads" in result:
        logger.info("heads: %s", json.dumps(result["heads"]))


if __name__ == "__main__":
    main()
