"""Evaluate a router with mteb (``pip install sprachbund-router[eval]``).

``mteb_model(router)`` wraps a :class:`~sprachbund_router.router.SprachbundRouter` as an mteb
encoder: mteb's evaluators call ``encode`` with batches of texts and the task's metadata; each
text is routed as ``router.encode`` routes it (identified, sent to its sprachbund's encoder or to
the fallback, served in the router's vector space), so the scores are the router's own.

    import mteb
    from sprachbund_router import SprachbundRouter
    from sprachbund_router.mteb_model import mteb_model

    model = mteb_model(SprachbundRouter.default())
    results = mteb.evaluate(model, mteb.get_tasks(tasks=["Tatoeba"]), cache=None)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

try:
    from mteb.models.abs_encoder import AbsEncoder
    from mteb.models.model_meta import ModelMeta
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError("the mteb integration needs mteb: pip install 'sprachbund-router[eval]'") from err

if TYPE_CHECKING:
    from sprachbund_router.router import SprachbundRouter


class MtebRouter(AbsEncoder):
    """A router as an mteb encoder (mteb's ``EncoderProtocol``)."""

    def __init__(self, router: SprachbundRouter, name: str, revision: str | None = None) -> None:
        self.model = router
        self.mteb_model_meta = ModelMeta(
            loader=None, name=name, revision=revision, release_date=None, languages=None, n_parameters=None,
            memory_usage_mb=None, max_tokens=float(max(s.max_length for s in router.config.encoders.values())),
            embed_dim=router.get_sentence_embedding_dimension(), license="mit", open_weights=True,
            public_training_code=None, public_training_data=None, framework=["PyTorch"], similarity_fn_name="cosine",
            use_instructions=False, training_datasets=None,
        )

    def encode(self, inputs: Any, *, task_metadata: Any = None, hf_split: str = "", hf_subset: str = "",
               prompt_type: Any = None, **kwargs: Any) -> np.ndarray:
        """Vectors of every text in mteb's batches, in order, as the router serves them."""
        texts = [text for batch in inputs for text in batch["text"]]
        return self.model.encode(texts, batch_size=int(kwargs.get("batch_size", 32)),
                                 show_progress_bar=bool(kwargs.get("show_progress_bar", False)))


def mteb_model(router: SprachbundRouter, name: str = "sprachbund-router/router", revision: str | None = None) -> MtebRouter:
    """Wrap ``router`` for ``mteb.evaluate``."""
    return MtebRouter(router, name, revision)
