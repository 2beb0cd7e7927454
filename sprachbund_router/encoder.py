"""One transformer encoder and the sentence vectors read off it.

Weights load from safetensors only and remote code is never trusted. Texts are batched by
token count (less padding) and returned in input order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from sprachbund_router.batching import length_sorted_batches, n_batches, windows
from sprachbund_router.checkpoint import check_encoder_dir, check_encoder_settings, usable_positions
from sprachbund_router.config import EncoderSpec, PoolingConfig
from sprachbund_router.errors import CheckpointError
from sprachbund_router.pooling import pool, pool_layers, resolve_layer

logger = logging.getLogger(__name__)


class SentenceEncoder:
    """A transformers encoder plus tokenizer that turns texts into pooled vectors.

    Args:
        model: a transformers encoder (e.g. ``BertModel``, ``XLMRobertaModel``).
        tokenizer: its tokenizer.
        pooling: which ``hidden_states`` entry and which pooling to use.
        text_prefix: prepended to every text (e5 models expect ``"query: "``).
        max_length: truncation length in tokens.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        pooling: PoolingConfig,
        text_prefix: str = "",
        max_length: int = 256,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.text_prefix = text_prefix
        self.max_length = max_length
        self.layer = resolve_layer(pooling.layer, self.num_layers)

    def with_prefix(self, prefix: str) -> SentenceEncoder:
        """The same model and tokenizer with another text prefix (nothing is copied or changed)."""
        return SentenceEncoder(self.model, self.tokenizer, self.pooling, text_prefix=prefix, max_length=self.max_length)

    @property
    def num_layers(self) -> int:
        """Number of transformer layers."""
        return int(self.model.config.num_hidden_layers)

    @property
    def dim(self) -> int:
        """Dimension of the sentence vectors."""
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.model.parameters()).device

    @classmethod
    def from_pretrained(
        cls, path: str | Path, pooling: PoolingConfig, spec: EncoderSpec | None = None, device: str | None = None
    ) -> SentenceEncoder:
        """Load an encoder directory (safetensors only, no remote code).

        Raises:
            CheckpointError: the directory is missing, lacks weights or cannot be loaded.
        """
        path = Path(path)
        check_encoder_dir(path)
        spec = spec or EncoderSpec(path=str(path), max_length=min(256, usable_positions(path) or 256))
        check_encoder_settings(path, spec, pooling)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
            kwargs = {"use_safetensors": True, "trust_remote_code": False, "output_loading_info": True}
            try:  # encoders with a pooler (BERT, XLM-R) do not need it for sentence vectors
                model, info = AutoModel.from_pretrained(str(path), add_pooling_layer=False, **kwargs)
            except TypeError:
                model, info = AutoModel.from_pretrained(str(path), **kwargs)
        except Exception as err:  # truncated files, wrong shapes...: every failure becomes a CheckpointError
            raise CheckpointError(f"cannot load encoder from {path}: {type(err).__name__}: {str(err)[:500]}") from err
        missing = sorted(info.get("missing_keys") or [])
        mismatched = sorted(str(m) for m in (info.get("mismatched_keys") or []))
        if missing or mismatched or info.get("error_msgs"):
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise CheckpointError(
                f"encoder weights in {path} are incomplete or damaged: "
                + (f"{len(missing)} tensor(s) missing ({shown})" if missing else "")
                + (f"; shape mismatch: {mismatched[:3]}" if mismatched else "")
                + (f"; {info['error_msgs'][:2]}" if info.get("error_msgs") else "")
                + "; refusing to run with randomly initialised weights"
            )
        for name, tensor in model.state_dict().items():  # NaN or inf weights make vectors NaN
            # any NaN or inf makes the sum non-finite, so a finite sum clears the tensor at the cost of
            # one read; only a non-finite sum (or a finite tensor whose sum overflows) needs the exact check
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor.sum())) and not bool(torch.isfinite(tensor).all()):
                raise CheckpointError(f"encoder weights in {path} are damaged: tensor {name!r} holds non-finite values (NaN or inf)")
        if device:
            model = model.to(device)
        logger.info("loaded encoder %s (%d layers, dim %d)", path, model.config.num_hidden_layers, model.config.hidden_size)
        return cls(model, tokenizer, pooling, text_prefix=spec.text_prefix, max_length=spec.max_length)

    # ------------------------------------------------------------------ encoding
    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenise (with the prefix), truncate and pad into one batch; warns about truncated texts."""
        return self._pad(self._token_ids(texts))

    def _pad(self, ids: list[list[int]]) -> dict[str, torch.Tensor]:
        padded = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt")
        return {k: padded[k].to(self.device) for k in ("input_ids", "attention_mask")}

    def _token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids (with the prefix and special tokens, truncated to ``max_length``), unpadded;
        warns about truncated texts."""
        prefixed = [self.text_prefix + t for t in texts]
        ids: list[list[int]] = self.tokenizer(prefixed, truncation=True, max_length=self.max_length)["input_ids"]
        at_limit = [p for p, x in zip(prefixed, ids) if len(x) >= self.max_length]
        if at_limit:
            full = self.tokenizer(at_limit, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
            n_cut = sum(len(x) > self.max_length for x in full)
            if n_cut:
                logger.warning("%d text(s) longer than %d tokens were truncated", n_cut, self.max_length)
        return ids

    @torch.inference_mode()
    def encode(
        self, texts: Sequence[str], batch_size: int = 32, normalize: bool = True, progress: bool = False
    ) -> np.ndarray:
        """Encode ``texts`` into a float32 array ``[len(texts), dim]`` in input order."""
        return self.encode_layers(texts, [self.layer], batch_size, normalize, progress)[self.layer]

    @torch.inference_mode()
    def encode_layers(
        self,
        texts: Sequence[str],
        layers: Sequence[int],
        batch_size: int = 32,
        normalize: bool = True,
        progress: bool = False,
        mode: str | None = None,
    ) -> dict[int, np.ndarray]:
        """Encode ``texts`` once and pool several ``hidden_states`` entries.

        Texts are batched by token count (see :mod:`sprachbund_router.batching`).

        Returns:
            layer index (non-negative) -> float32 array ``[len(texts), dim]``.
        """
        from tqdm.auto import tqdm

        mode = mode or self.pooling.mode
        resolved = [resolve_layer(layer, self.num_layers) for layer in layers]
        out = {layer: np.empty((len(texts), self.dim), dtype=np.float32) for layer in resolved}
        with tqdm(total=n_batches(len(texts), batch_size), desc="encoding", unit="batch", disable=not progress) as bar:
            for start, stop in windows(len(texts), batch_size):
                ids = self._token_ids(texts[start:stop])
                for idx in length_sorted_batches([len(x) for x in ids], batch_size):
                    batch = self._pad([ids[i] for i in idx])
                    hidden = self.model(**batch, output_hidden_states=True).hidden_states
                    if len(resolved) == 1:
                        pooled = {resolved[0]: pool(hidden[resolved[0]], batch["attention_mask"], mode)}  # type: ignore[arg-type]
                    else:
                        pooled = pool_layers(hidden, batch["attention_mask"], resolved, mode)  # type: ignore[arg-type]
                    rows = [start + i for i in idx]
                    for layer, vecs in pooled.items():
                        if normalize:
                            vecs = torch.nn.functional.normalize(vecs.float(), dim=-1)
                        out[layer][rows] = vecs.float().cpu().numpy()
                    bar.update()
        return out
