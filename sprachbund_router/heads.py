"""Task heads: a linear classifier over a sprachbund encoder's sentence vectors.

A head is stored as ``head.safetensors`` (``weight`` ``[n_labels, dim]``, ``bias``) with
``head_config.json`` beside it. Inference is plain numpy, so heads run the same with the
torch and the ONNX backends.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sprachbund_router.checkpoint import read_json_object
from sprachbund_router.errors import CheckpointError
from sprachbund_router.tensors import load_tensors, save_tensors
from sprachbund_router.validation import confined

#: The head key of texts that fell back (no sprachbund): ``heads[task]["*"]``.
FALLBACK_HEAD = "*"
HEAD_WEIGHTS = "head.safetensors"
HEAD_CONFIG = "head_config.json"


@dataclass
class HeadConfig:
    """What a head predicts and how it was trained.

    Attributes:
        task: task name (e.g. ``"emoji-topic"``).
        labels: class names, in the order of the weight rows.
        setting: fine-tuning setting: ``"english"``, ``"pivot"`` or ``"every"`` language.
        train_languages: languages whose labelled data trained the head.
        metrics: measured results (e.g. accuracy per language on held-out data).
    """

    task: str
    labels: list[str]
    setting: str = "english"
    train_languages: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class ClassificationHead:
    """A linear softmax classifier on L2-normalised sentence vectors."""

    config: HeadConfig
    weight: np.ndarray
    bias: np.ndarray

    def __post_init__(self) -> None:
        if self.weight.ndim != 2 or self.weight.shape[0] != len(self.config.labels):
            raise ValueError(f"head weight {self.weight.shape} does not match {len(self.config.labels)} labels")
        if self.bias.shape != (self.weight.shape[0],):
            raise ValueError(f"head bias {self.bias.shape} does not match weight {self.weight.shape}")

    @property
    def input_dim(self) -> int:
        """Dimension of the vectors the head expects."""
        return int(self.weight.shape[1])

    def predict_proba(self, vectors: np.ndarray) -> np.ndarray:
        """Class probabilities ``[n, n_labels]``."""
        if vectors.shape[1] != self.input_dim:
            raise ValueError(f"head expects {self.input_dim}-d vectors, got {vectors.shape[1]}")
        logits = vectors @ self.weight.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def save(self, directory: str | Path) -> Path:
        """Write ``head.safetensors`` and ``head_config.json`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_tensors(directory / HEAD_WEIGHTS, {"weight": self.weight.astype(np.float32), "bias": self.bias.astype(np.float32)})
        (directory / HEAD_CONFIG).write_text(json.dumps(asdict(self.config), indent=2, ensure_ascii=False) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> ClassificationHead:
        """Load a head saved by :meth:`save`."""
        directory = Path(directory)
        cfg_path = directory / HEAD_CONFIG
        if not cfg_path.is_file():
            raise CheckpointError(f"head directory {directory} has no {HEAD_CONFIG}")
        for name in (HEAD_CONFIG, HEAD_WEIGHTS):  # a link in a head folder never leads out of it
            if (directory / name).is_symlink():
                confined(directory, name, f"head file {name}")
        try:
            config = HeadConfig(**read_json_object(cfg_path))
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{cfg_path} is corrupt: {err}") from err
        tensors, _ = load_tensors(directory / HEAD_WEIGHTS)
        try:
            return cls(config, tensors["weight"], tensors["bias"])
        except (KeyError, ValueError) as err:
            raise CheckpointError(f"{directory / HEAD_WEIGHTS} is corrupt: {err!r}") from err
