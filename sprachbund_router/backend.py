"""Inference backends of the router's encoders, in one place (like sentence-transformers' ``backend``).

What an encoder must offer the router (:class:`Encoder`), the backend names, the ONNX files each
ONNX backend reads, and how closely each backend must reproduce a space's probe vectors. A leaf
module: the router, the checkpoint checks, the ONNX encoder, the space, the CLI and the exporters
all read these names from here and nothing here imports them back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

#: torch: transformers + PyTorch; onnx / onnx-int8: onnxruntime + tokenizers only (after `sbr export onnx`).
ENCODER_BACKENDS = ("torch", "onnx", "onnx-int8")

ONNX_DIR = "onnx"
#: The router's ONNX graphs return the pooled, normalised sentence vector; their names say so, so
#: that sentence-transformers' ONNX backend (which looks for a token-level ``onnx/model.onnx``)
#: never takes them for its own.
ONNX_FILES = {"onnx": "model_pooled.onnx", "onnx-int8": "model_pooled_qint8.onnx"}
#: Names of the same graphs in routers exported before the rename (still read, with a warning).
LEGACY_ONNX_FILES = {"onnx": "model.onnx", "onnx-int8": "model_qint8.onnx"}
#: What ``sbr export onnx`` measured, beside the graphs (the model cards read it).
ONNX_EXPORT_INFO = "export.json"

#: Cosine that an encoder's vector of each probe text must reach against the stored one, per backend.
PROBE_MIN_COSINE = {"torch": 0.999, "onnx": 0.999, "onnx-int8": 0.95}


@runtime_checkable
class Encoder(Protocol):
    """What the router needs of an encoder (torch ``SentenceEncoder`` or ``OnnxSentenceEncoder``)."""

    dim: int

    def encode(self, texts: Sequence[str], batch_size: int = 32, normalize: bool = True, progress: bool = False) -> np.ndarray:
        """Vectors of ``texts`` in input order."""
        ...


def check_backend(backend: str) -> str:
    """``backend`` if it is one of :data:`ENCODER_BACKENDS`, else a ValueError naming the choices."""
    if backend not in ENCODER_BACKENDS:
        raise ValueError(f"backend {backend!r} is not available; choose one of {ENCODER_BACKENDS}")
    return backend
