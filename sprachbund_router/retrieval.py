"""Retrieval with the router, as a mixin of :class:`~sprachbund_router.router.SprachbundRouter`:
the corpus's encoder (one sprachbund's, or the shared one), in-memory and on-disk indexes and
their identity checks, cosine or ratio-margin ranking."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from sprachbund_router.backend import PROBE_MIN_COSINE
from sprachbund_router.disk_index import DiskIndex
from sprachbund_router.errors import CheckpointError
from sprachbund_router.index import VectorIndex, check_scoring, check_top_k
from sprachbund_router.inputs import validate_langs, validate_texts
from sprachbund_router.results import PreparedCorpus, RetrievalResult, Route

#: Share of a corpus that must fall in one sprachbund for that sprachbund's encoder to be used.
CORPUS_MAJORITY = 0.9
#: Text whose vector identifies an encoder's weights in an index file.
PROBE_TEXT = "The quick brown fox jumps over the lazy dog. Der Hund läuft. Собака бежит. 犬が走る。"


class RetrievalMixin:
    """``retrieve``, ``build_index`` and the identity an index records."""

    def corpus_sprachbund(self, routes: Sequence[Route]) -> str | None:
        """The sprachbund of a corpus: the one holding at least 90% of its texts, else None."""
        counts = Counter(r.sprachbund for r in routes)
        group, n = counts.most_common(1)[0]
        return group if group is not None and n >= CORPUS_MAJORITY * len(routes) else None

    def build_index(
        self,
        corpus: Sequence[str],
        lang: str | Sequence[str | None] | None = None,
        encoder: str | None = None,
        batch_size: int = 32,
        keep_texts: bool = True,
        progress: bool = False,
    ) -> VectorIndex:
        """Encode a corpus once for repeated :meth:`retrieve` calls.

        The encoder is the corpus's sprachbund encoder when at least 90% of the corpus is in
        one sprachbund, else the shared encoder; ``encoder=`` forces one.
        """
        items = validate_texts(corpus, name="corpus")
        routes = self._route(items, validate_langs(lang, len(items)))
        if encoder is None:
            group = self.corpus_sprachbund(routes)
            encoder = self.config.canonical_encoder(self.config.sprachbund_encoders[group] if group else self.config.shared_encoder)
        vecs = self._encode_routed(items, [encoder] * len(items), routes, batch_size, True, progress)
        return VectorIndex(vecs, encoder, list(items) if keep_texts else None, self.encoder_identity(encoder))

    def encoder_identity(self, name: str) -> dict:
        """What an index built with encoder ``name`` records about it: pooling, prefix, length,
        vector space (settings and file checksum), the backend, and the encoder's vector of
        :data:`PROBE_TEXT` (which identifies the weights)."""
        import hashlib
        from dataclasses import asdict

        with self._lock:
            if name not in self._identities:
                spec = self.config.encoders[name]
                space = self.config.spaces.get(name)
                space_info = None
                if space is not None:
                    data = self._local_path(space.path, f"spaces.{name}.path").read_bytes()
                    settings = {k: v for k, v in asdict(space).items() if k not in ("path", "provenance")}
                    space_info = {"sha256": hashlib.sha256(data).hexdigest(), **settings}
                probe = self.encoder(name).encode([PROBE_TEXT], normalize=True)[0]
                self._identities[name] = {
                    "encoder": name, "adapter_base": spec.adapter_base, "text_prefix": spec.text_prefix,
                    "max_length": spec.max_length, "pooling": asdict(self.config.pooling), "space": space_info,
                    "backend": self.backend, "probe": [round(float(x), 6) for x in probe],
                }
                # rows take their own route's encoder where it serves the same space: the index depends on them all
                cfg = self.config
                others = sorted(o for o in cfg.served_encoders() if o != name and cfg.same_space(o, name))
                if others:
                    self._identities[name]["row_encoders"] = {
                        "sprachbunds": {g: e for g, e in sorted(cfg.sprachbund_encoders.items()) if cfg.same_space(e, name)},
                        "languages": {lang: e for lang, e in sorted(cfg.language_encoders.items()) if cfg.same_space(e, name)},
                        "fallback": cfg.fallback_encoder if cfg.same_space(cfg.fallback_encoder, name) else None,
                        "probes": {o: [round(float(x), 6) for x in self.encoder(o).encode([PROBE_TEXT], normalize=True)[0]]
                                   for o in others},
                    }
            return self._identities[name]

    def check_index(self, index: VectorIndex | DiskIndex) -> None:
        """Refuse an index this router's encoders did not make.

        Raises:
            CheckpointError: the index's encoder is not in this router, it has no identity, or
                its pooling, prefix, space or weights (probe vector) differ.
        """
        if index.encoder not in self.config.encoders:
            raise CheckpointError(f"the index was built with encoder {index.encoder!r}, which this router lacks "
                                  f"(it has {sorted(self.config.encoders)})")
        if not index.identity:
            raise CheckpointError("the index records no encoder identity (it was not built by router.build_index); "
                                  "rebuild it with this router")
        own = self.encoder_identity(index.encoder)
        mine_rows = own.get("row_encoders") or {}
        theirs_rows = index.identity.get("row_encoders") or {}
        differ = [k for k in own if k not in ("probe", "backend", "row_encoders") and index.identity.get(k) != own[k]]
        differ += [f"row_encoders.{k}" for k in ("sprachbunds", "languages", "fallback") if mine_rows.get(k) != theirs_rows.get(k)]
        if differ:
            detail = "; ".join(f"{k}: index {index.identity.get(k)!r} vs router {own.get(k)!r}" for k in differ)
            raise CheckpointError(f"the index was built by another encoder than {index.encoder!r} of this router ({detail[:400]}); "
                                  "rebuild it with this router")
        bound = min(PROBE_MIN_COSINE.get(str(index.identity.get("backend")), 0.999), PROBE_MIN_COSINE.get(self.backend, 0.999))
        probes = [(index.encoder, index.identity.get("probe"), own["probe"]),
                  *((o, (theirs_rows.get("probes") or {}).get(o), p) for o, p in (mine_rows.get("probes") or {}).items())]
        for name, theirs_probe, mine_probe in probes:
            theirs = np.asarray(theirs_probe or [], dtype=np.float32)
            mine = np.asarray(mine_probe, dtype=np.float32)
            if theirs.shape != mine.shape:
                raise CheckpointError(f"the index's vectors have dimension {theirs.shape[-1] if theirs.ndim else 0}, "
                                      f"encoder {name!r} gives {mine.shape[0]}; rebuild it with this router")
            cos = float(theirs @ mine / max(float(np.linalg.norm(theirs) * np.linalg.norm(mine)), 1e-12))
            if cos < bound:
                raise CheckpointError(f"the index was built with other weights than encoder {name!r} of this router "
                                      f"(probe vectors agree at cosine {cos:.4f} < {bound}); rebuild it with this router")

    def prepare_corpus(self, corpus: Sequence[str], lang: str | Sequence[str | None] | None = None) -> PreparedCorpus:
        """Route a corpus once; :meth:`retrieve` encodes it with each encoder its queries need, once."""
        items = validate_texts(corpus, name="corpus")
        routes = self._route(items, validate_langs(lang, len(items)))
        return PreparedCorpus(items, routes, self.corpus_sprachbund(routes), {})

    def retrieve(
        self,
        queries: str | Sequence[str],
        corpus: Sequence[str] | VectorIndex | DiskIndex | PreparedCorpus,
        top_k: int = 1,
        query_lang: str | Sequence[str | None] | None = None,
        corpus_lang: str | Sequence[str | None] | None = None,
        batch_size: int = 32,
        progress: bool = False,
        scoring: str | None = None,
    ) -> list[RetrievalResult]:
        """Rank corpus texts for each query by cosine similarity (or ratio margin).

        Both sides of every comparison come from one encoder: a query in the corpus's
        sprachbund uses that sprachbund's encoder, any other query the shared encoder. With
        a prebuilt :class:`VectorIndex`, queries use the index's encoder (the index is checked
        against it: :meth:`check_index`). A :class:`PreparedCorpus` (:meth:`prepare_corpus`)
        keeps the corpus vectors between calls.

        ``scoring`` (default: the router's ``retrieval_scoring``): ``"margin"`` ranks by ratio
        margin (Artetxe & Schwenk 2019; :func:`~sprachbund_router.index.top_k_margin`) instead of
        cosine, which discounts corpus texts that are near everything. The neighbourhoods are
        taken among the corpus and among the queries of the same call (with one query the
        ranking is the cosine one).
        """
        scoring = check_scoring(scoring or self.config.retrieval_scoring)
        q_items = validate_texts(queries, name="queries")
        q_routes = self._route(q_items, validate_langs(query_lang, len(q_items)))
        if isinstance(corpus, (VectorIndex, DiskIndex)):
            check_top_k(top_k, len(corpus))
            self.check_index(corpus)
            indexes = {corpus.encoder: corpus}
            q_encoders = [corpus.encoder] * len(q_items)
        else:
            prepared = corpus if isinstance(corpus, PreparedCorpus) else self.prepare_corpus(corpus, corpus_lang)
            check_top_k(top_k, len(prepared))
            group_encoder = (self.config.canonical_encoder(self.config.sprachbund_encoders[prepared.sprachbund])
                             if prepared.sprachbund else None)
            q_encoders = [
                group_encoder if (group_encoder and r.sprachbund == prepared.sprachbund) else self.config.shared_encoder
                for r in q_routes
            ]
            for name in dict.fromkeys(q_encoders):
                if name not in prepared.indexes:
                    vecs = self._encode_routed(prepared.texts, [name] * len(prepared), prepared.routes, batch_size, True, progress)
                    prepared.indexes[name] = VectorIndex(vecs, name)
            indexes = {name: prepared.indexes[name] for name in dict.fromkeys(q_encoders)}
        results: list[RetrievalResult | None] = [None] * len(q_items)
        q_vecs = self._encode_routed(q_items, q_encoders, q_routes, batch_size, True, progress)
        for name, index in indexes.items():
            rows = [i for i, e in enumerate(q_encoders) if e == name]
            if not rows:
                continue
            idx, scores = index.search(q_vecs[rows], top_k, scoring)
            for j, row in enumerate(rows):
                used = self.config.row_encoder(name, q_routes[row].encoder)  # the encoder of this query's vector
                results[row] = RetrievalResult(idx[j].tolist(), scores[j].tolist(), used, q_routes[row])
        return [r for r in results if r is not None]
