"""Score sprachbund adapters against their baselines: base / the router's space / adapters
(sprachbund, all, random), with the held-out sets of :mod:`training.held_out_eval`.

``python -m training.adapter_report ADAPTERS_DIR [--router DIR] [--n 400] [--output benchmarks/results/adapters.json]``

``ADAPTERS_DIR`` holds one PEFT LoRA folder per trained adapter (what
:func:`training.adapters.train_adapters` writes: ``sb1`` ... for the sprachbunds, ``all``,
``random1`` ...), each with its ``training_metrics.json`` (the languages it was trained on,
steps, device, seconds). Every adapter is loaded with the runtime's own loader
(:func:`sprachbund_router.adapters.apply_lora`) on the router's shared encoder, and a language
is served by the adapter of the group it belongs to (English too), so cross-sprachbund pairs
mix adapters exactly as the router would. The adapters were trained to land in the router's
space (distillation targets are the router's served English vectors), so their vectors are
used as they come out, normalised; residual adapters (trained under the space) go through the
router's space like the base's vectors. Vectors are cached per adapter (keyed by its probe vectors).
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

from sprachbund_router.config import invert_sprachbunds
from sprachbund_router.paths import cache_root, data_dir, default_router_dir
from sprachbund_router.space import unit
from training.held_out_eval import HeldOut, held_out_sets, score_sets, served_by
from training.metrics import paired_bootstrap
from training.space import VectorCache

logger = logging.getLogger(__name__)

#: the sets every system is scored on, in table order ("help": LibreOffice help paragraphs, a
#: second out-of-domain set, None when not built: ``python -m training.libreoffice --help-set 500``)
SET_KEYS = ("dev", "test", "ood", "help", "cross", "table3")


def dev_set(corpus: Path, languages: list[str], n: int = 200) -> HeldOut:
    """The dev split of every language (what choices are made on; never the test split)."""
    from training.corpus import read_pairs

    dev = {lang: read_pairs(corpus, lang, "dev")[:n] for lang in languages if lang != "en"}
    return {"dev": {lang: (lang, "en", p) for lang, p in dev.items() if len(p) >= 30}}


def adapter_groups(adapters_dir: Path) -> dict[str, list[str]]:
    """Trained adapters in ``adapters_dir``: name -> the languages it was trained on."""
    out = {}
    for d in sorted(p for p in adapters_dir.iterdir() if (p / "adapter_config.json").is_file()):
        metrics = json.loads((d / "training_metrics.json").read_text()) if (d / "training_metrics.json").is_file() else {}
        out[d.name] = list(metrics.get("languages", []))
    return out


def _settings(adapter_dir: Path) -> dict[str, Any]:
    f = adapter_dir / "training_metrics.json"
    return json.loads(f.read_text()).get("settings", {}) if f.is_file() else {}


def run(adapters_dir: Path, router_dir: Path | None = None, output: Path | None = None, n: int = 400,
        corpus: Path | None = None, encoder: Any = None, batch_size: int = 64, device: str | None = None,
        only: Sequence[str] | None = None) -> dict[str, Any]:
    """Score every system; returns the result (also written to ``output``). ``only``: score
    these sets (:data:`SET_KEYS`) and leave the others out (a quicker look)."""
    from sprachbund_router.config import RouterConfig
    from sprachbund_router.encoder import SentenceEncoder
    from sprachbund_router.space import VectorSpace

    started = time.time()
    router_dir = router_dir or default_router_dir()
    corpus = corpus or data_dir() / "corpus"
    cfg = RouterConfig.load(router_dir)
    spec = cfg.encoders[cfg.shared_encoder]
    if encoder is None:
        encoder = SentenceEncoder.from_pretrained(router_dir / spec.path, cfg.pooling, spec, device=device)  # type: ignore[operator]
    space = VectorSpace.load(router_dir, cfg.spaces[cfg.shared_encoder], cfg.language_to_sprachbund) \
        if cfg.shared_encoder in cfg.spaces else None
    if space is not None:
        space.check_encoder(encoder, "torch", cfg.shared_encoder)
    trained = adapter_groups(adapters_dir)
    residual = {name for name in trained if _settings(adapters_dir / name).get("residual")}
    if residual and space is None:
        raise ValueError(f"adapters {sorted(residual)} were trained under a vector space, but router {router_dir} has none")
    if not trained:
        raise FileNotFoundError(f"no PEFT adapter folders (adapter_config.json) in {adapters_dir}")
    models, caches = _adapter_encoders(encoder, adapters_dir, trained, cfg.pooling, spec, batch_size)

    sets = {**held_out_sets(corpus, cfg.languages, cfg.sprachbunds, n), **dev_set(corpus, cfg.languages, min(n, 200))}
    sets = _only(sets, only)
    adapter_systems = _adapter_systems(trained, cfg.sprachbunds)
    _prefill(encoder, models, caches, sets, [layout for _, layout in adapter_systems.values()], batch_size)

    def serve_base(lang: str, texts: list[str]) -> np.ndarray:
        return unit(caches["base"](texts))

    space_served = served_by(space)

    def serve_space(lang: str, texts: list[str]) -> np.ndarray:
        return space_served(lang, caches["base"](texts), False)

    def by_groups(groups: Mapping[str, list[str]]) -> Callable[[str, list[str]], np.ndarray]:
        member = invert_sprachbunds(groups)

        def serve(lang: str, texts: list[str]) -> np.ndarray:
            name = member.get(lang)
            if name not in caches:
                return serve_space(lang, texts)
            # a residual adapter was trained under the space: served through it, as the router does
            return space_served(lang, caches[name](texts), False) if name in residual else unit(caches[name](texts))
        return serve

    systems: dict[str, tuple[str, Callable[[str, list[str]], np.ndarray]]] = {
        "base": ("the shared encoder's vectors, unchanged", serve_base),
        "router space (centring + maps)": ("the router's own space file, as served", serve_space),
    }
    systems.update({name: (what, by_groups(layout)) for name, (what, layout) in adapter_systems.items()})

    result_systems = _score_systems(systems, sets, caches)
    result = {
        "task": "sprachbund adapters against the base, the router's space and the all / random baselines",
        "router": str(router_dir),
        "adapters": str(adapters_dir),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, Python {platform.python_version()} (scoring)",
        "command": f"python -m training.adapter_report {adapters_dir} --n {n}" + (f" --sets {','.join(only)}" if only else ""),
        "metric": "top-1 accuracy (%), mean of both directions; 'test' = mean over languages; 'dev' = dev split (choices)",
        "pairs_per_set": n,
        "training": _training_records(adapters_dir, trained),
        "systems": result_systems,
        "test_per_sprachbund": _per_sprachbund(result_systems, cfg.sprachbunds),
        "paired_bootstrap": paired_differences(result_systems),
        "seconds": round(time.time() - started, 1),
    }
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    return result


def _only(sets: dict[str, Any], only: Sequence[str] | None) -> dict[str, Any]:
    """The sets named in ``only`` (None: all); an unknown name is refused."""
    if only is None:
        return sets
    unknown = sorted(set(only) - set(SET_KEYS))
    if unknown:
        raise ValueError(f"unknown set(s) {unknown}; the sets are {', '.join(SET_KEYS)}")
    return {k: v for k, v in sets.items() if k in only}


def _adapter_encoders(encoder: Any, adapters_dir: Path, trained: Mapping[str, Any], pooling: Any, spec: Any,
                      batch_size: int) -> tuple[dict[str, Any], dict[str, VectorCache]]:
    """Each trained adapter applied to the shared encoder, and a vector cache per system (base included)."""
    from sprachbund_router.adapters import apply_lora
    from sprachbund_router.encoder import SentenceEncoder

    vectors_dir = cache_root() / "vectors"
    caches: dict[str, VectorCache] = {"base": VectorCache(lambda t: encoder.encode(t, batch_size=batch_size), vectors_dir / "base.npz")}
    models = {}
    for name in trained:
        models[name] = apply_lora(encoder.model, adapters_dir / name)
        enc = SentenceEncoder(models[name], encoder.tokenizer, pooling, text_prefix=spec.text_prefix, max_length=spec.max_length)
        caches[name] = VectorCache(lambda t, e=enc: e.encode(t, batch_size=batch_size), vectors_dir / "adapter.npz")
    return models, caches


def _score_systems(systems: Mapping[str, tuple[str, Callable[[str, list[str]], np.ndarray]]], sets: Any,
                   caches: Mapping[str, VectorCache]) -> dict[str, Any]:
    """Every system scored on every set (the caches saved after each)."""
    result_systems: dict[str, Any] = {}
    for name, (what, serve) in systems.items():
        t0 = time.time()
        scores = score_sets(lambda key, lang, texts, s=serve: s(lang, texts), sets)
        result_systems[name] = {"what": what, **scores}
        logger.info("%-32s %s  (%.0fs)", name, "  ".join(f"{k} {_cell(scores.get(k))}" for k in SET_KEYS), time.time() - t0)
        for c in caches.values():
            c.save()
    return result_systems


def _adapter_systems(trained: Mapping[str, list[str]], sprachbunds: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, dict]]:
    """Each adapter system: name -> (what, adapter -> the languages it serves); systems without adapters left out."""
    return {name: (what, layout) for name, what, layout in (
        ("adapters: sprachbund", "each language served by its sprachbund's adapter",
         {g: trained[g] or list(sprachbunds[g]) for g in sprachbunds if g in trained}),
        ("adapters: all", "one adapter trained on every language, same total steps",
         {"all": trained["all"]} if "all" in trained else {}),
        ("adapters: random", "random groups of the sprachbunds' sizes, one adapter each",
         {name: ms for name, ms in trained.items() if name.startswith("random")}),
    ) if layout}


def _per_sprachbund(result_systems: Mapping[str, Mapping[str, Any]], sprachbunds: Mapping[str, Sequence[str]]) -> dict:
    """Each system's mean test top-1 over each sprachbund's languages."""
    per_sprachbund: dict[str, dict[str, float]] = {}
    for name, s in result_systems.items():
        for g, ms in sprachbunds.items():
            vals = [v for lang, v in s.get("per_test", {}).items() if lang in ms]
            if vals:
                per_sprachbund.setdefault(g, {})[name] = round(float(np.mean(vals)), 2)
    return per_sprachbund


def _training_records(adapters_dir: Path, trained: Mapping[str, Any]) -> dict[str, Any]:
    """What each adapter's training recorded (steps, examples, time, device, loss, size, settings)."""
    training = {}
    for name in trained:
        f = adapters_dir / name / "training_metrics.json"
        if f.is_file():
            m = json.loads(f.read_text())
            training[name] = {k: m.get(k) for k in ("steps", "examples", "seconds", "steps_per_second", "device", "train_loss",
                                                    "adapter_bytes")}
            training[name]["settings"] = m.get("settings")
    return training


#: the system every baseline is compared with, and the baselines (report names)
SPRACHBUND_SYSTEM = "adapters: sprachbund"
BASELINE_SYSTEMS = {"all": "adapters: all", "random": "adapters: random", "space": "router space (centring + maps)"}


def paired_differences(systems: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The sprachbund adapters against each baseline present, per set: mean difference and 95%
    interval over the set's languages or language pairs (:func:`training.metrics.paired_bootstrap`)."""
    out: dict[str, Any] = {"what": "mean difference (points) of the sprachbund adapters against a baseline, 95% interval "
                                   "from 2,000 resamples of the languages (or language pairs) of each set"}
    sb = systems.get(SPRACHBUND_SYSTEM)
    for label, name in BASELINE_SYSTEMS.items():
        if sb is None or name not in systems:
            continue
        out[f"sprachbund - {label}"] = {k: paired_bootstrap(sb[f"per_{k}"], systems[name][f"per_{k}"])
                                        for k in SET_KEYS if sb.get(f"per_{k}") and systems[name].get(f"per_{k}")}
    return out


def _prefill(encoder: Any, models: Mapping[str, Any], caches: Mapping[str, VectorCache], sets: HeldOut,
             layouts: list[Mapping[str, list[str]]], batch_size: int) -> None:
    """Encode what every system will ask for in one pass over the texts: the base's layers below
    the adapters' first adapted one run once per batch (:mod:`training.shared_bottom`).
    ``layouts``: for each adapter system, adapter name -> the languages it serves."""
    from training.shared_bottom import BASE, encode_shared

    sides = [(lang, [p[side] for p in pairs]) for items in sets.values() for a, b, pairs in items.values()
             for side, lang in ((0, a), (1, b))]
    wanted: dict[str, list[str]] = {BASE: [t for _, texts in sides for t in texts]}
    for layout in layouts:
        member = invert_sprachbunds(layout)
        for lang, texts in sides:
            if member.get(lang) in models:
                wanted.setdefault(member[lang], []).extend(texts)
    needs = {name: caches[name].missing(texts) for name, texts in wanted.items()}
    needs = {name: texts for name, texts in needs.items() if texts}
    if not needs:
        return
    t0 = time.time()
    got = encode_shared(encoder, models, needs, batch_size)
    for name, vecs in got.items():
        caches[name].add(list(vecs), np.stack(list(vecs.values())))
    logger.info("encoded %s texts for %d models in %.0fs (lower layers shared)", f"{sum(map(len, needs.values())):,}", len(needs),
                time.time() - t0)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def markdown(result: Mapping[str, Any]) -> str:
    """The side-by-side table of a result."""
    lines = ["| system | dev | test (mean over languages) | out-of-domain (VLC) | out-of-domain (help) | cross-sprachbund "
             "| Table 3 pairs |", "|---|---|---|---|---|---|---|"]
    base = result["systems"]["base"]
    for name, v in result["systems"].items():
        cells = [_cell(v.get(k)) if name == "base" or v.get(k) is None or base.get(k) is None
                 else f"{v[k]:.2f} ({v[k] - base[k]:+.2f})" for k in SET_KEYS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("adapters", type=Path, help="folder of trained adapters (sb1 ..., all, random1 ...)")
    parser.add_argument("--router", type=Path, default=None, help="router directory (default: the embedded default router)")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/adapters.json"))
    parser.add_argument("--n", type=int, default=400, help="pairs per language / language pair (at most)")
    parser.add_argument("--sets", default=None, help=f"comma-separated sets to score (default: all of {','.join(SET_KEYS)})")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = run(args.adapters, args.router, args.output, args.n, only=args.sets.split(",") if args.sets else None)
    logger.info("\n%s", markdown(result))


if __name__ == "__main__":
    main()
