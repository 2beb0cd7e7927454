"""The ONNX backend: onnxruntime plus the ``tokenizers`` library, no torch needed.

The exported graph takes ``inputs_embeds`` and ``attention_mask`` and returns the pooled,
L2-normalised sentence vector of the layer fixed at export (see ``exporters/onnx.py``). The
token-embedding table (80% of a multilingual encoder's weights: 250k rows) is not in the graph:
it is a float16 safetensors file, memory-mapped, and each batch gathers its rows, so only the
rows of tokens in use become resident. The runtime tokenises, gathers, pads and runs the graph.
Graphs exported before that change (taking ``input_ids``) are still run as they are.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sprachbund_router.backend import ONNX_DIR, ONNX_TOKEN_EMBEDDINGS
from sprachbund_router.batching import length_sorted_batches, n_batches, windows
from sprachbund_router.checkpoint import check_encoder_dir, read_onnx_export_info
from sprachbund_router.config import EncoderSpec, PoolingConfig, resolve_layer
from sprachbund_router.errors import CheckpointError
from sprachbund_router.tensors import map_tensor

logger = logging.getLogger(__name__)


#: onnxruntime graph fusions left off: on this project's x86 CPUs (onnxruntime 1.32) the fused
#: SkipLayerNormalization kernel ran 4-5x slower than the Add + LayerNormalization it replaces
#: and BiasGelu 1.3-1.7x slower than Add + Gelu; with both off the int8 encoder ran 1.3-1.5x
#: faster (``python -m benchmarks.onnx_fusions`` measures both again).
SLOW_CPU_FUSIONS: tuple[str, ...] = ("SkipLayerNormFusion", "BiasGeluFusion")


class OnnxSentenceEncoder:
    """Sentence vectors from an exported ONNX encoder (same interface as ``SentenceEncoder.encode``).

    Args:
        path: encoder directory with ``tokenizer.json`` and ``onnx/``.
        pooling: the router's pooling (checked against the layer fixed at export).
        spec: the encoder's text prefix and maximum length.
        variant: ``"onnx"`` (fp32) or ``"onnx-int8"``.
        disabled_optimizers: onnxruntime graph transformers to switch off (default
            :data:`SLOW_CPU_FUSIONS`).
        onnx_dir: subfolder holding the ONNX files (the exporter checks a folder before moving
            it into place).
        base: for a top-layer encoder (:mod:`sprachbund_router.top_layers`), its loaded base:
            its tokenizer and token-embedding table are used (shared, not loaded again).
    """

    def __init__(
        self, path: Path, pooling: PoolingConfig, spec: EncoderSpec, variant: str = "onnx",
        disabled_optimizers: Sequence[str] = SLOW_CPU_FUSIONS, onnx_dir: str = ONNX_DIR,
        base: OnnxSentenceEncoder | None = None,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        graph = check_encoder_dir(path, variant, onnx_dir, base=base.path if base is not None else None)
        info = read_onnx_export_info(path, onnx_dir)
        try:
            wanted = resolve_layer(pooling.layer, info["num_layers"])
        except ValueError as err:
            raise CheckpointError(f"{path / onnx_dir}: {err}") from None
        if info["mode"] != pooling.mode or info["layer_resolved"] != wanted:
            raise CheckpointError(
                f"{path / onnx_dir} was exported for hidden_states[{info['layer_resolved']}] ({info['mode']}) but the "
                f"router pools hidden_states[{pooling.layer}] ({pooling.mode}); export again"
            )
        self.path = path
        self.text_prefix = spec.text_prefix
        self.max_length = spec.max_length
        self.layer = info["layer_resolved"]
        self.num_layers = info["num_layers"]
        self.dim = int(info["dim"])
        if base is not None:
            if base.max_length != self.max_length or base.dim != self.dim:
                raise CheckpointError(f"{path}: its base {base.path} serves max_length {base.max_length} and dim "
                                      f"{base.dim}, this encoder {self.max_length} and {self.dim}")
            self.tokenizer, self.pad_id = base.tokenizer, base.pad_id
        else:
            self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
            self.pad_id = pad_token_id(path)
            self.tokenizer.no_padding()
            self.tokenizer.enable_truncation(max_length=self.max_length)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(graph), opts, providers=["CPUExecutionProvider"],
                                                disabled_optimizers=list(disabled_optimizers))
        except Exception as err:  # onnxruntime raises its own types (InvalidProtobuf, Fail...)
            raise CheckpointError(f"{graph} is not a loadable ONNX model ({type(err).__name__}): {str(err)[:300]}; "
                                  "export again (`sbr export onnx ROUTER_DIR`)") from err
        self.variant = variant
        self.graph = graph
        self.table: np.ndarray | None = None  # graphs taking input_ids hold their own table
        if "inputs_embeds" in {i.name for i in self.session.get_inputs()}:
            if base is not None and base.table is None:
                raise CheckpointError(f"{graph} takes token embeddings but its base {base.path} has none; export again")
            self.table_file = base.table_file if base is not None else path / onnx_dir / ONNX_TOKEN_EMBEDDINGS
            self.table = base.table if base is not None else map_tensor(self.table_file, "weight")
            if self.table.ndim != 2 or self.table.shape[1] != self._width():
                raise CheckpointError(f"{self.table_file} holds a table of shape {self.table.shape}; the graph "
                                      f"{graph.name} takes rows of {self._width()}")
        logger.info("loaded ONNX encoder %s (%s)", path, variant)

    def _width(self) -> int | None:
        shape = next(i.shape for i in self.session.get_inputs() if i.name == "inputs_embeds")
        return shape[-1] if isinstance(shape[-1], int) else None

    def _inputs(self, ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        if self.table is None:
            return {"input_ids": ids, "attention_mask": mask}
        if int(ids.max()) >= len(self.table):
            raise CheckpointError(f"the tokenizer gave token id {int(ids.max())} but {self.table_file} has "
                                  f"{len(self.table)} rows: tokenizer and export do not match")
        embeds = self.table[ids].astype(np.float32)  # reads only the rows of this batch
        if not np.isfinite(embeds).all():
            raise CheckpointError(f"{self.table_file} is damaged: rows of tokens "
                                  f"{sorted(set(ids[~np.isfinite(embeds).all(-1)].tolist()))[:5]} hold NaN or inf")
        return {"inputs_embeds": embeds, "attention_mask": mask}

    def encode(self, texts: Sequence[str], batch_size: int = 32, normalize: bool = True, progress: bool = False) -> np.ndarray:
        """Encode ``texts`` into float32 ``[n, dim]`` in input order (vectors come normalised from the graph)."""
        from tqdm.auto import tqdm

        if not normalize:
            logger.warning("the ONNX graph returns L2-normalised vectors; normalize=False is ignored")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        n_cut = 0
        with tqdm(total=n_batches(len(texts), batch_size), desc="encoding", unit="batch", disable=not progress) as bar:
            for start, stop in windows(len(texts), batch_size):
                encs = self.tokenizer.encode_batch([self.text_prefix + t for t in texts[start:stop]])
                n_cut += sum(bool(e.overflowing) for e in encs)
                for idx in length_sorted_batches([len(e.ids) for e in encs], batch_size):
                    width = len(encs[idx[0]].ids)  # longest first
                    ids = np.full((len(idx), width), self.pad_id, dtype=np.int64)
                    mask = np.zeros((len(idx), width), dtype=np.int64)
                    for row, i in enumerate(idx):
                        n = len(encs[i].ids)
                        ids[row, :n] = encs[i].ids
                        mask[row, :n] = 1
                    out[[start + i for i in idx]] = self.session.run(None, self._inputs(ids, mask))[0]
                    bar.update()
        if not np.isfinite(out).all():  # finiteness is checked on what is served, not on every load
            raise CheckpointError(f"{self.graph} gave NaN or inf vectors: its weights are damaged; export again")
        if n_cut:
            logger.warning("%d text(s) longer than %d tokens were truncated", n_cut, self.max_length)
        return out


def pad_token_id(path: Path) -> int:
    """The padding token id of an encoder directory (``config.json``, then ``tokenizer_config.json``; 0 if neither says)."""
    for name, key in (("config.json", "pad_token_id"), ("tokenizer_config.json", "pad_token_id")):
        f = path / name
        if f.is_file():
            value = json.loads(f.read_text()).get(key)
            if isinstance(value, int):
                return value
    return 0
