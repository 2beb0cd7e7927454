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

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

try:
    from mteb.models.abs_encoder import AbsEncoder
    from mteb.models.model_meta import ModelMeta
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError("the mteb integration needs mteb: pip install 'sprachbund-router[eval]'") from err

if TYPE_CHECKING:
    from sprachbund_router.router import SprachbundRouter


def router_identity(router: SprachbundRouter) -> tuple[str, str]:
    """(name, revision) unique to a router: its Hub repo id and snapshot commit when it came from
    the Hub, else ``sprachbund-router/<folder>-<hash>`` and the hash of what makes its vectors
    (config, language vectors, spaces, identifier) — so mteb's result cache never hands one
    router's scores to another."""
    directory = Path(router.directory)
    h = hashlib.sha256()
    for rel in ["router_config.json", "language_vectors.safetensors", "language_id/ngram.safetensors",
                *sorted({s.path for s in router.config.spaces.values()})]:
        f = directory / rel
        if f.is_file():
            h.update(rel.encode() + b"\0" + f.read_bytes())
    digest = h.hexdigest()[:12]
    source = getattr(router, "source", None)
    if source and not Path(source).exists() and "/" in source:
        commit = directory.name if directory.parent.name == "snapshots" else digest
        return source, commit
    return f"sprachbund-router/{directory.name or 'router'}-{digest}", digest


def _mteb_languages(codes: list[str]) -> list[str] | None:
    """ISO 639-3 with script (``deu-Latn``) of the router's languages (None without langcodes)."""
    try:
        import langcodes
    except ImportError:
        return None
    out = []
    for code in codes:
        try:
            lang = langcodes.Language.get(code)
            out.append(f"{lang.to_alpha3()}-{lang.maximize().script}")
        except (LookupError, ValueError):
            continue
    return sorted(set(out))


class MtebRouter(AbsEncoder):
    """A router as an mteb encoder (mteb's ``EncoderProtocol``), described by a ``ModelMeta``
    filled in from the router itself (name and revision unique to it, languages, parameters)."""

    def __init__(self, router: SprachbundRouter, name: str | None = None, revision: str | None = None) -> None:
        self.model = router
        auto_name, auto_revision = router_identity(router)
        shared = router.encoder(router.config.shared_encoder)
        params = getattr(shared, "model", None)
        n_params = int(sum(p.numel() for p in params.parameters())) if hasattr(params, "parameters") else None
        built = router.config.provenance.get("built_at")
        self.mteb_model_meta = ModelMeta(
            loader=None, name=name or auto_name, revision=revision or auto_revision,
            release_date=built[:10] if isinstance(built, str) else None,
            languages=_mteb_languages(router.config.languages), n_parameters=n_params,
            memory_usage_mb=None, max_tokens=float(max(s.max_length for s in router.config.encoders.values())),
            embed_dim=router.get_sentence_embedding_dimension(), license="mit", open_weights=True,
            public_training_code=None, public_training_data=None, framework=["PyTorch", "Sentence Transformers"],
            similarity_fn_name="cosine", use_instructions=False, training_datasets=None,
        )

    def encode(self, inputs: Any, *, task_metadata: Any = None, hf_split: str = "", hf_subset: str = "",
               prompt_type: Any = None, **kwargs: Any) -> np.ndarray:
        """Vectors of every text in mteb's batches, in order, as the router serves them."""
        texts = [text for batch in inputs for text in batch["text"]]
        return self.model.encode(texts, batch_size=int(kwargs.get("batch_size", 32)),
                                 show_progress_bar=bool(kwargs.get("show_progress_bar", False)))


def mteb_model(router: SprachbundRouter, name: str | None = None, revision: str | None = None) -> MtebRouter:
    """Wrap ``router`` for ``mteb.evaluate`` (name and revision default to ones unique to the router)."""
    return MtebRouter(router, name, revision)
