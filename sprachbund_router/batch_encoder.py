"""Encode a corpus too big for one machine with an existing distributed engine.

``BatchEncoder`` is the callable that Ray Data's ``map_batches`` (or a Spark ``mapInPandas`` /
Dask ``map_partitions`` wrapper) runs on each worker: the router is loaded once per worker, each
batch ``{"text": [...]}`` gets an ``"embedding"`` column. For vectors that will be searched
together, pass ``encoder=`` (e.g. the router's shared encoder): every text is then embedded by
that one encoder, along its own route (its language's centring and map), as
:meth:`SprachbundRouter.build_index` does for a corpus spanning sprachbunds.

    import ray
    from ray.data import ActorPoolStrategy
    from sprachbund_router.batch_encoder import BatchEncoder

    ds = ray.data.read_text("s3://bucket/corpus/")                  # one text per line, column "text"
    ds = ds.map_batches(BatchEncoder, fn_constructor_kwargs={"model": "org/router", "encoder": "base"},
                        batch_size=256, compute=ActorPoolStrategy(min_size=1, max_size=4), num_cpus=1)
    ds.write_parquet("s3://bucket/vectors/")

(each actor reserves ``num_cpus`` for its life: keep ``max_size * num_cpus`` below the CPUs Ray
has, so read and write tasks still run; see docs/guide/usage.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sprachbund_router.errors import InvalidInputError
from sprachbund_router.inputs import validate_texts


class BatchEncoder:
    """Add an ``embedding`` column to batches of texts (one router per worker).

    Args:
        model: router directory or Hub repo id (None: the embedded default router).
        encoder: embed every text with this router encoder (None: each text's sprachbund encoder).
        lang: language of every text (None: identify).
        column / output: input and output column names.
        batch_size: texts per forward pass.
        backend: ``auto`` (default), ``torch``, ``onnx`` or ``onnx-int8``.
    """

    def __init__(self, model: str | None = None, encoder: str | None = None, lang: str | None = None,
                 column: str = "text", output: str = "embedding", batch_size: int = 32, backend: str = "auto") -> None:
        from sprachbund_router.router import SprachbundRouter

        self.router = SprachbundRouter.default(backend=backend) if model is None else SprachbundRouter.from_pretrained(
            model, backend=backend)
        if encoder is not None and encoder not in self.router.config.encoders:
            raise ValueError(f"no encoder {encoder!r} in the router (has {sorted(self.router.config.encoders)})")
        self.encoder, self.lang, self.column, self.output, self.batch_size = encoder, lang, column, output, batch_size

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        """``batch[column]`` (texts) -> the same batch with ``batch[output]`` (float32 ``[n, dim]``)."""
        if self.column not in batch:
            raise InvalidInputError(f"the batch has no column {self.column!r} (columns: {sorted(map(str, batch))})")
        column = batch[self.column]
        if column is None or isinstance(column, (str, bytes, bytearray)):
            raise InvalidInputError(f"batch[{self.column!r}] must be a column of texts (a list or array of str), "
                                    f"got {type(column).__name__}")
        texts = validate_texts(list(column), name=f"batch[{self.column!r}]")  # as encode does: no str(None)
        if self.encoder is None:
            vecs = self.router.encode(texts, lang=self.lang, batch_size=self.batch_size)
        else:
            # asked of one encoder, as an index asks: each row still takes its own encoder where it serves that space
            routes = self.router.route(texts, lang=self.lang)
            vecs = self.router._encode_routed(texts, [self.encoder] * len(texts), routes, self.batch_size, True)
        out = dict(batch)
        out[self.output] = np.asarray(vecs, dtype=np.float32)
        return out
