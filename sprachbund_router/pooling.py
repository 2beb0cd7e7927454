"""Sentence vectors from token states: which layer, which pooling.

Layer indices follow transformers' ``hidden_states`` convention: index 0 is the embedding
output and index ``n`` the output of transformer layer ``n`` (so for a 12-layer model the
paper's "7th layer" is ``hidden_states[7]`` and the last layer is ``hidden_states[12]``,
also written -1).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

from sprachbund_router.config import PoolingMode, resolve_layer

__all__ = ["layer_of", "pool", "pool_layers", "resolve_layer"]


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: PoolingMode) -> torch.Tensor:
    """Pool token states ``[batch, seq, dim]`` into sentence vectors ``[batch, dim]``.

    ``mean`` averages over real tokens only (padding is masked out); ``cls`` takes the first
    token (``<s>`` / ``[CLS]``).
    """
    if mode == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def pool_layers(
    hidden_states: Sequence[torch.Tensor], attention_mask: torch.Tensor, layers: Sequence[int], mode: PoolingMode
) -> dict[int, torch.Tensor]:
    """Pool several ``hidden_states`` entries at once (used to choose a layer by measurement)."""
    return {layer: pool(hidden_states[layer], attention_mask, mode) for layer in layers}


#: ``...layer.<i>.`` in a parameter or module name (``encoder.layer.3.attention...``).
_LAYER_OF_NAME = re.compile(r"(?:^|\.)layer\.(\d+)\.")


def layer_of(name: str) -> int | None:
    """The transformer layer a parameter or module name belongs to (None: embeddings, pooler...)."""
    m = _LAYER_OF_NAME.search(name)
    return int(m.group(1)) if m else None
