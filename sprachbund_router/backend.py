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

#: auto: the fastest backend the router folder and this machine can serve (:data:`AUTO`); torch:
#: transformers + PyTorch; onnx / onnx-int8: onnxruntime + tokenizers only (after `sbr export onnx`).
ENCODER_BACKENDS = ("auto", "torch", "onnx", "onnx-int8")
AUTO = "auto"
#: What ``auto`` becomes: onnx-int8 where the CPU has fast int8 kernels and every served encoder's
#: int8 graph passed its check at export, onnx where every served encoder's fp32 graph passed
#: parity, else torch (also for a GPU device, LoRA adapters and encoders named by Hub repo id).
CONCRETE_BACKENDS = ("torch", "onnx", "onnx-int8")

ONNX_DIR = "onnx"
#: The router's ONNX graphs return the pooled, normalised sentence vector; their names say so, so
#: that sentence-transformers' ONNX backend (which looks for a token-level ``onnx/model.onnx``)
#: never takes them for its own.
ONNX_FILES = {"onnx": "model_pooled.onnx", "onnx-int8": "model_pooled_qint8.onnx"}
#: Names of the same graphs in routers exported before the rename (still read, with a warning).
LEGACY_ONNX_FILES = {"onnx": "model.onnx", "onnx-int8": "model_qint8.onnx"}
#: The token-embedding table of graphs that take ``inputs_embeds`` (float16 rows, memory-mapped:
#: only the rows a batch uses become resident; the rest of the graph is ~20% of the weights).
ONNX_TOKEN_EMBEDDINGS = "token_embeddings.safetensors"
#: What ``sbr export onnx`` measured, beside the graphs (the model cards read it).
ONNX_EXPORT_INFO = "export.json"

#: int8 variants tried in turn until one keeps every check set within ``max_int8_drop``: each is a
#: name and a regular expression of the MatMul / Attention nodes kept in fp32 (None: none).
INT8_PLANS: tuple[tuple[str, str | None], ...] = (
    ("every MatMul and Attention in int8", None),
    ("feed-forward output projections in fp32", r"/layer\.\d+/output/dense/MatMul$"),
    ("feed-forward layers in fp32", r"/layer\.\d+/(intermediate|output)/dense/MatMul$"),
)

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
    """``backend`` if it is one of :data:`ENCODER_BACKENDS` (``auto`` included), else a ValueError naming the choices."""
    if backend not in ENCODER_BACKENDS:
        raise ValueError(f"backend {backend!r} is not available; choose one of {ENCODER_BACKENDS}")
    return backend
