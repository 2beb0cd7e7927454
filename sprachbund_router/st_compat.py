"""The sentence-transformers surface of the router (``encode_query``, ``similarity``,
``get_sentence_embedding_dimension``, pools...), as a mixin of
:class:`~sprachbund_router.router.SprachbundRouter`, and the checks of ``encode``'s
sentence-transformers keywords (``inputs=``, ``truncate_dim``, ``precision``...)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np

from sprachbund_router.space import unit

_Router = TypeVar("_Router", bound="SentenceTransformersMixin")


#: encode()'s precisions (sentence-transformers' quantize_embeddings beyond float32).
PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")


def _one_of(sentences: Any, inputs: Any) -> Any:
    """The texts, passed as ``sentences`` (sentence-transformers 5) or ``inputs`` (6), not both."""
    if inputs is not None and sentences is not None:
        raise ValueError("pass the texts once: as sentences (the first argument) or as inputs=, not both")
    return inputs if sentences is None else sentences


def _check_encode_options(prompt: str | None, prompt_name: str | None, output_value: str | None, precision: str,
                          truncate_dim: int | None) -> int | None:
    """Refuse what encode() cannot honour (never ignore it); returns ``truncate_dim``."""
    if prompt is not None or prompt_name is not None:
        raise ValueError("the router prepends each encoder's configured text prefix itself; prompt and prompt_name "
                         "are not supported (they would move the vectors out of the router's space)")
    if output_value not in (None, "sentence_embedding"):
        raise ValueError(f"output_value {output_value!r} is not supported: the router returns sentence embeddings")
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not supported (one of {PRECISIONS})")
    if truncate_dim is not None and (isinstance(truncate_dim, bool) or not isinstance(truncate_dim, int) or truncate_dim < 1):
        raise ValueError(f"truncate_dim must be a positive number of dimensions, got {truncate_dim!r}")
    return truncate_dim


def _truncate_and_quantize(vecs: np.ndarray, truncate_dim: int | None, normalize: bool, precision: str) -> np.ndarray:
    """The first ``truncate_dim`` dimensions (renormalised when normalising), then ``precision``."""
    if truncate_dim is not None and truncate_dim < vecs.shape[1]:
        vecs = unit(vecs[:, :truncate_dim]) if normalize else np.ascontiguousarray(vecs[:, :truncate_dim])
    if precision != "float32":
        from sentence_transformers.quantization import quantize_embeddings

        vecs = quantize_embeddings(vecs, precision=precision)  # type: ignore[arg-type]
    return vecs


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _as_numpy(x: Any) -> np.ndarray:
    if _is_tensor(x):
        return x.detach().float().cpu().numpy()
    if isinstance(x, list) and x and _is_tensor(x[0]):
        return np.stack([t.detach().float().cpu().numpy() for t in x])
    return np.asarray(x, dtype=np.float32)


def _like_input(values: np.ndarray, as_tensor: bool) -> Any:
    if not as_tensor:
        return values
    import torch

    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))


class SentenceTransformersMixin:
    """What sentence-transformers users call on a model, answered with the router's own vectors."""

    def encode_query(self, sentences: str | Sequence[str], **kwargs: Any) -> Any:
        """Vectors of queries (sentence-transformers 5+; the router's own prefix is used for both sides)."""
        return self.encode(sentences, **kwargs)

    def encode_document(self, sentences: str | Sequence[str], **kwargs: Any) -> Any:
        """Vectors of corpus documents (sentence-transformers 5+; the same space as :meth:`encode_query`)."""
        return self.encode(sentences, **kwargs)

    def similarity(self, a: Any, b: Any) -> Any:
        """Cosine similarity matrix ``[len(a), len(b)]`` of two sets of vectors, as a torch tensor
        (what sentence-transformers returns, so ``torch.topk(model.similarity(q, c), k)`` works)."""
        x, y = np.atleast_2d(_as_numpy(a)), np.atleast_2d(_as_numpy(b))
        return _like_input(unit(x) @ unit(y).T, True)

    def similarity_pairwise(self, a: Any, b: Any) -> Any:
        """Cosine of row i of ``a`` with row i of ``b`` (sentence-transformers' method), as a torch tensor."""
        x, y = np.atleast_2d(_as_numpy(a)), np.atleast_2d(_as_numpy(b))
        if x.shape != y.shape:
            raise ValueError(f"similarity_pairwise needs inputs of one shape, got {x.shape} and {y.shape}")
        return _like_input((unit(x) * unit(y)).sum(1), True)

    #: How vectors are compared (sentence-transformers' attribute).
    similarity_fn_name = "cosine"

    #: Dimensions encode() keeps by default (sentence-transformers' attribute; None: all).
    truncate_dim: int | None = None

    def get_sentence_embedding_dimension(self) -> int:
        """Dimension of the served vectors (sentence-transformers' method)."""
        return int(self.encoder(self.config.shared_encoder).dim)

    def get_embedding_dimension(self) -> int:
        """Dimension of the served vectors (sentence-transformers 6's name)."""
        return self.get_sentence_embedding_dimension()

    @property
    def max_seq_length(self) -> int:
        """Tokens the shared encoder reads (longer texts are truncated with a warning)."""
        return int(self.config.encoders[self.config.shared_encoder].max_length)

    @property
    def tokenizer(self) -> Any:
        """The shared encoder's tokenizer (every encoder of a router shares the base's vocabulary)."""
        return getattr(self.encoder(self.config.shared_encoder), "tokenizer", None)

    def to(self: _Router, device: str) -> _Router:
        """Move the loaded torch encoders to ``device`` (later loads go there too); returns the router."""
        with self._lock:
            self.device = device
            for enc in set(self._encoders.values()):
                model = getattr(enc, "model", None)
                if model is not None and hasattr(model, "to"):
                    model.to(device)
        return self

    def eval(self: _Router) -> _Router:
        """No-op for API compatibility: the router's encoders are always in inference mode."""
        return self

    def start_multi_process_pool(self, target_devices: Sequence[str] | None = None) -> dict[str, Any]:
        """sentence-transformers' multi-process pool: the router encodes in one process with torch's
        own threads, so this returns an empty pool that :meth:`encode` accepts as ``pool=``
        (ignored) and :meth:`stop_multi_process_pool` closes."""
        return {"processes": [], "target_devices": list(target_devices or [])}

    @staticmethod
    def stop_multi_process_pool(pool: dict[str, Any]) -> None:
        """Close a pool from :meth:`start_multi_process_pool` (nothing to stop)."""
        pool.clear()
