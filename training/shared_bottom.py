"""Several adapters on one base, encoded with the base's unadapted lower layers run once.

A LoRA adapter on the top layers of a base (``AdapterSettings.layers``) leaves every layer below
its first adapted one unchanged, so when the base and several such adapters encode the same
texts (scoring them side by side: :mod:`training.adapter_report`), those lower layers need to
run only once per batch. The input of the first adapted layer is captured from the base's own
forward pass (a forward pre-hook: whatever arguments the encoder passes its layers, such as the
attention mask in the form this transformers version uses), and each adapter runs its own copies
of the layers from there up to the pooled one. The result equals each model's full forward pass
(tested), at a fraction of its cost: with the top 4 of 11 layers adapted, an adapter costs 4/11
of the base.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from sprachbund_router.batching import length_sorted_batches
from sprachbund_router.encoder import SentenceEncoder
from sprachbund_router.pooling import layer_of, pool
from sprachbund_router.top_layers import layer_stack

logger = logging.getLogger(__name__)

BASE = "base"


class _Stop(Exception):
    """Raised by the capture hook when the base's own vectors are not needed."""


def first_changed_layer(base: torch.nn.Module, adapted: torch.nn.Module) -> int | None:
    """The lowest layer whose parameters differ between ``base`` and ``adapted`` (None: none
    differ); -1 when a parameter outside the layers (embeddings) differs."""
    theirs = dict(adapted.named_parameters())
    lowest: int | None = None
    for name, p in base.named_parameters():
        q = theirs.get(name)
        if q is None or q.data_ptr() == p.data_ptr():
            continue
        if q.shape != p.shape or not torch.equal(q, p):
            layer = layer_of(name)
            if layer is None:
                return -1
            lowest = layer if lowest is None else min(lowest, layer)
    return lowest


def encode_shared(base: SentenceEncoder, adapted: Mapping[str, torch.nn.Module], needs: Mapping[str, Sequence[str]],
                  batch_size: int = 64) -> dict[str, dict[str, np.ndarray]]:
    """Vectors (normalised, pooled as ``base`` pools) of ``needs[name]`` for each model:
    ``"base"`` is ``base`` itself, every other name one of ``adapted`` (models sharing ``base``'s
    lower layers). Returns name -> text -> vector.

    Texts are grouped by the set of models that need them, then batched by length, so each
    batch runs the base's lower layers once and exactly the models that need all its rows.
    """
    start = min((x for x in (first_changed_layer(base.model, m) for m in adapted.values()) if x is not None), default=None)
    pooled = base.layer  # hidden_states[pooled] = output of layer pooled - 1
    if start is not None and start < 0:
        raise ValueError("an adapter changes the embeddings: nothing below its layers is shared")
    if start is None or start >= pooled:
        start = pooled  # nothing adapted below the pooled layer: every adapter equals the base there
    stacks = {name: layer_stack(m) for name, m in adapted.items()}
    layers = layer_stack(base.model)
    who: dict[str, set[str]] = {}
    for name, texts in needs.items():
        if name != BASE and name not in adapted:
            raise KeyError(f"no model named {name!r}")
        for t in texts:
            who.setdefault(t, set()).add(name)
    groups: dict[frozenset[str], list[str]] = {}
    for t, names in who.items():
        groups.setdefault(frozenset(names), []).append(t)
    out: dict[str, dict[str, np.ndarray]] = {name: {} for name in needs}
    captured: dict[str, object] = {}

    def hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        captured["args"], captured["kwargs"] = args, kwargs
        if captured.get("stop"):
            raise _Stop

    handle = layers[start].register_forward_pre_hook(hook, with_kwargs=True) if start < pooled else None
    try:
        with torch.inference_mode():
            for names, texts in groups.items():
                ids = base._token_ids(texts)
                for idx in length_sorted_batches([len(x) for x in ids], batch_size):
                    batch = base._pad([ids[i] for i in idx])
                    mask = batch["attention_mask"]
                    vecs: dict[str, torch.Tensor] = {}
                    captured["stop"] = BASE not in names and handle is not None
                    try:
                        hidden = base.model(**batch, output_hidden_states=True).hidden_states
                        vecs[BASE] = pool(hidden[pooled], mask, base.pooling.mode)  # type: ignore[arg-type]
                    except _Stop:  # the lower layers ran; the captured input of the first adapted one is all we need
                        pass
                    for name in names - {BASE}:
                        if handle is None:  # nothing adapted below the pooled layer: the base's own vectors
                            vecs[name] = vecs[BASE]
                            continue
                        kwargs = dict(captured["kwargs"])  # type: ignore[call-overload]
                        args: tuple = captured["args"]  # type: ignore[assignment]
                        h, rest = (kwargs.pop("hidden_states"), args) if "hidden_states" in kwargs else (args[0], args[1:])
                        for layer in stacks[name][start:pooled]:
                            h = layer(h, *rest, **kwargs)
                            h = h[0] if isinstance(h, tuple) else h
                        vecs[name] = pool(h, mask, base.pooling.mode)  # type: ignore[arg-type]
                    for name, v in vecs.items():
                        if name in out:
                            v = torch.nn.functional.normalize(v.float(), dim=-1).cpu().numpy()
                            for i, row in zip(idx, v):
                                out[name][texts[i]] = row
    finally:
        if handle is not None:
            handle.remove()
    return out
