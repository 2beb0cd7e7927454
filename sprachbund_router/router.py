"""SprachbundRouter: text -> language -> sprachbund -> encoder -> vectors -> heads/search."""

from __future__ import annotations

import logging
import os
import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sprachbund_router.backend import AUTO, Encoder, check_backend
from sprachbund_router.checkpoint import check_encoder_dir, check_encoder_settings, onnx_unready
from sprachbund_router.config import (
    LANGUAGE_VECTORS_NAME,
    RouterConfig,
    load_language_vectors,
)
from sprachbund_router.errors import CheckpointError, InvalidInputError, MissingHeadError
from sprachbund_router.heads import FALLBACK_HEAD, ClassificationHead, HeadConfig
from sprachbund_router.hub import resolve
from sprachbund_router.inputs import validate_langs, validate_texts
from sprachbund_router.language_id import LanguageGuess, decide_by_length, make_identifier
from sprachbund_router.results import Classification, PreparedCorpus, RetrievalResult, Route
from sprachbund_router.retrieval import CORPUS_MAJORITY, PROBE_TEXT, RetrievalMixin
from sprachbund_router.saving import SavingMixin
from sprachbund_router.space import VectorSpace, unit
from sprachbund_router.st_compat import (
    SentenceTransformersMixin,
    _as_numpy,
    _check_encode_options,
    _one_of,
    _truncate_and_quantize,
)
from sprachbund_router.top_layers import apply_top_layers, is_top_layers
from sprachbund_router.validation import confined

logger = logging.getLogger(__name__)

__all__ = ["CORPUS_MAJORITY", "PROBE_TEXT", "Classification", "PreparedCorpus", "RetrievalResult", "Route",
           "SprachbundRouter"]


def _check_encoder_paths(paths: Mapping[str, str | os.PathLike[str]] | None, config: RouterConfig) -> dict[str, Path]:
    """``encoder_paths`` checked: every key a repo id the config names, every value a folder."""
    if not paths:
        return {}
    if not isinstance(paths, Mapping):
        raise CheckpointError(f"encoder_paths must map Hub repo ids to folders, got {type(paths).__name__}")
    named = {spec.repo_id for spec in config.encoders.values() if spec.repo_id}
    out = {}
    for repo, folder in paths.items():
        if repo not in named:
            raise CheckpointError(f"encoder_paths names {repo!r}, which no encoder of this router uses (it uses {sorted(named)})")
        if not Path(folder).is_dir():
            raise CheckpointError(f"encoder_paths[{repo!r}] = {os.fspath(folder)!r} is not a folder")
        out[repo] = Path(folder)
    return out


class SprachbundRouter(SentenceTransformersMixin, SavingMixin, RetrievalMixin):
    """Embed, classify and search text with the encoder of each text's sprachbund.

    Build one with :meth:`from_pretrained` (a router directory or a Hub repo id) or
    :meth:`default` (the embedded default router made by ``sbr setup``).

    Args:
        config: the router configuration.
        directory: the router directory relative paths in ``config`` refer to.
        device: torch device for the encoders (default: CPU).
        backend: ``"auto"`` (default: the fastest backend this folder and machine can serve,
            see :data:`~sprachbund_router.backend.CONCRETE_BACKENDS`), ``"torch"``, ``"onnx"`` or
            ``"onnx-int8"``. :attr:`backend` holds the one in use.
        local_files_only / cache_dir: how encoders stored in Hub repos are resolved.
    """

    def __init__(
        self,
        config: RouterConfig,
        directory: str | Path,
        device: str | None = None,
        backend: str = AUTO,
        local_files_only: bool | None = None,
        cache_dir: str | Path | None = None,
        encoder_paths: Mapping[str, str | os.PathLike[str]] | None = None,
    ) -> None:
        check_backend(backend)
        self.config = config
        self.directory = Path(directory)
        self.device = device
        self._local_files_only = local_files_only  # for encoders that live in Hub repos
        self._cache_dir = cache_dir
        self._encoder_paths = _check_encoder_paths(encoder_paths, config)
        self.backend = self._auto_backend() if backend == AUTO else backend
        self._encoders: dict[str, Encoder] = {}
        self._heads: dict[tuple[str, str], ClassificationHead] = {}
        self._fitted_heads: dict[str, ClassificationHead] = {}  # relative folder -> a head fit_head made, not saved yet
        self._checked: set[str] = set()  # encoder names whose space was checked against the loaded weights
        self._lock = threading.RLock()  # lazy loading happens once whatever the number of threads
        self._identities: dict[str, dict] = {}
        self.source: str | None = None
        self.spaces = self._load_spaces()
        self._identifiers = {b: make_identifier(b, config.languages, self.directory) for b in config.language_id.backends}
        self._sprachbund_of = config.language_to_sprachbund
        self.languages, self.language_vectors = self._load_language_vectors()

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        path_or_repo_id: str | os.PathLike[str],
        revision: str | None = None,
        backend: str = AUTO,
        *,
        local_files_only: bool | None = None,
        cache_dir: str | Path | None = None,
        device: str | None = None,
        encoder_paths: Mapping[str, str | os.PathLike[str]] | None = None,
    ) -> SprachbundRouter:
        """Load a router directory or Hub repository.

        Args:
            path_or_repo_id: a local router directory or a Hub repo id (``org/name``).
            revision: Hub revision (branch, tag or commit).
            backend: ``"auto"`` (ONNX where ``sbr export onnx`` wrote graphs that passed their
                checks and onnxruntime is installed, int8 only on CPUs with fast int8 kernels;
                else torch), ``"torch"``, or ``"onnx"`` / ``"onnx-int8"`` (onnxruntime and the
                tokenizer only; needs the ONNX files written by ``sbr export onnx``).
            local_files_only: use only the local Hub cache (default: ``HF_HUB_OFFLINE``).
            cache_dir: huggingface_hub cache directory.
            device: torch device for the encoders.
            encoder_paths: Hub repo id -> local folder, for encoders the config names by repo id
                (e.g. a ``sbr export hub --dry-run`` folder tried offline:
                ``encoder_paths={"org/router-base": "dry/router-base"}``). Only what the caller
                names is read; a router never looks outside its own folder by itself.

        Raises:
            CheckpointError: missing or corrupt ``router_config.json``, language vectors or
                local encoder directory.
            HubAccessError: a repo id that is neither cached nor downloadable.
        """
        check_backend(backend)
        directory = resolve(path_or_repo_id, revision=revision, local_files_only=local_files_only,
                            cache_dir=cache_dir, what="router")
        config = RouterConfig.load(directory)
        router = cls(config, directory, device=device, backend=backend, local_files_only=local_files_only,
                     cache_dir=cache_dir, encoder_paths=encoder_paths)
        router.source = os.fspath(path_or_repo_id)  # what the caller named: a folder or a Hub repo id
        for name, spec in config.encoders.items():
            if spec.path is None:
                continue
            try:
                path = router._local_path(spec.path, f"encoders.{name}.path")
                if spec.adapter_base is None:
                    check_encoder_dir(path, router.backend)
                    check_encoder_settings(path, spec, config.pooling, name)
                elif not path.is_dir():
                    raise CheckpointError(f"adapter directory {spec.path!r} does not exist")
            except CheckpointError as err:
                raise CheckpointError(f"encoder {name!r} of router {directory}: {err}") from err
        return router

    @classmethod
    def default(cls, device: str | None = None, backend: str = AUTO) -> SprachbundRouter:
        """Load the embedded default router built by ``sbr setup``.

        Raises:
            CheckpointError: the default router has not been built yet.
        """
        from sprachbund_router.paths import default_router_dir

        directory = default_router_dir()
        if not (directory / "router_config.json").is_file():
            raise CheckpointError(
                f"the default router is not built yet ({directory} is empty); run `sbr setup` once "
                "(it converts the bundled multilingual-e5-small and computes the sprachbunds)"
            )
        return cls.from_pretrained(directory, device=device, backend=backend)

    def _local_path(self, path: str, key: str) -> Path:
        """``path`` (relative, from the config key ``key``) inside the router directory, or refused."""
        return confined(self.directory, path, key)

    def _load_spaces(self) -> dict[str, VectorSpace]:
        where = self.config.language_to_sprachbund
        spaces = {}
        for name, spec in self.config.spaces.items():
            try:
                self._local_path(spec.path, f"spaces.{name}.path")
                spaces[name] = VectorSpace.load(self.directory, spec, where)
            except CheckpointError as err:
                raise CheckpointError(f"space of encoder {name!r} in router {self.directory}: {err}") from err
        return spaces

    def _load_language_vectors(self) -> tuple[list[str], np.ndarray]:
        path = self._local_path(LANGUAGE_VECTORS_NAME, LANGUAGE_VECTORS_NAME)
        if not path.is_file():
            raise CheckpointError(f"router {self.directory} has no {LANGUAGE_VECTORS_NAME} (the language vectors "
                                  "its sprachbunds were computed from); the directory is incomplete")
        languages, vectors = load_language_vectors(self.directory)
        missing = sorted(set(self.config.languages) - set(languages))
        if missing:
            raise CheckpointError(f"{path} lacks vectors of router language(s) {missing}")
        return languages, vectors

    def _auto_backend(self) -> str:
        """What ``auto`` becomes here: onnx-int8 / onnx when every served encoder is a local folder
        whose graphs passed their checks at export (int8 only on a CPU with fast int8 kernels, and
        only where its check resolved a drop within the fp32 bound), else torch."""
        from importlib.util import find_spec

        from sprachbund_router.cpu import fast_int8

        served = sorted(self.config.served_encoders())
        specs = {name: self.config.encoders[name] for name in served}
        why = None
        if self.device not in (None, "cpu"):
            why = f"device {self.device!r}"
        elif any(spec.path is None or (spec.adapter_base is not None and not is_top_layers(self._spec_path(name)))
                 for name, spec in specs.items()):
            why = "an encoder is a Hub repo id or a LoRA adapter"
        elif find_spec("onnxruntime") is None or find_spec("tokenizers") is None:
            why = "onnxruntime is not installed"
        else:  # (encoder folder, its base's folder for a top-layer encoder)
            paths = [(self._spec_path(name), self._spec_path(spec.adapter_base) if spec.adapter_base else None)
                     for name, spec in specs.items()]
            why = next((r for p, b in paths if (r := onnx_unready(p, "onnx", b)) is not None), None)
        if why is not None:
            logger.info("backend auto: torch (%s)", why)
            return "torch"
        int8 = fast_int8() and all(onnx_unready(p, "onnx-int8", b) is None for p, b in paths)
        logger.info("backend auto: %s", "onnx-int8 (the CPU has fast int8 kernels)" if int8 else "onnx")
        return "onnx-int8" if int8 else "onnx"

    def _spec_path(self, name: str) -> Path:
        """The local folder of encoder ``name`` (one with a ``path``), inside the router directory."""
        return self._local_path(self.config.encoders[name].path, f"encoders.{name}.path")  # type: ignore[arg-type]

    def encoder(self, name: str) -> Encoder:
        """The encoder called ``name`` in the config, loaded on first use.

        An encoder with a space (``spaces`` in the config) is checked against the vectors the
        space was fitted on; a mismatch raises :class:`CheckpointError`.
        """
        with self._lock:
            enc = self._load_encoder(name)
            if name in self.spaces and name not in self._checked:
                # a space was fitted on the base: an adapter served through it (trained under it) is checked by its base
                base = self.config.encoders[name].adapter_base
                probed = (self._load_encoder(base), base) if base is not None else (enc, name)
                self.spaces[name].check_encoder(probed[0], self.backend, probed[1])
                self._checked.add(name)
            return enc

    def _load_encoder(self, name: str) -> Encoder:
        if name in self._encoders:
            return self._encoders[name]
        if name not in self.config.encoders:
            raise KeyError(f"no encoder {name!r}; this router has {sorted(self.config.encoders)}")
        spec = self.config.encoders[name]
        # encoders sharing the same weights and settings are loaded once
        for other, enc in self._encoders.items():
            o = self.config.encoders[other]
            if (o.path, o.repo_id, o.revision, o.text_prefix, o.max_length, o.adapter_base) == (
                spec.path, spec.repo_id, spec.revision, spec.text_prefix, spec.max_length, spec.adapter_base
            ):
                self._encoders[name] = enc
                return enc
        if spec.path is not None:
            path = self._local_path(spec.path, f"encoders.{name}.path")
        elif spec.repo_id in self._encoder_paths:  # a folder the caller named for this repo id
            path = self._encoder_paths[spec.repo_id]  # type: ignore[index]
            if spec.adapter_base is None:
                check_encoder_dir(path, self.backend)
        else:
            path = resolve(spec.repo_id, revision=spec.revision, local_files_only=self._local_files_only,  # type: ignore[arg-type]
                           cache_dir=self._cache_dir, what="encoder", hub_only=True)
            confined(path, ".", f"encoders.{name}.repo_id")
            if spec.adapter_base is None:
                check_encoder_settings(path, spec, self.config.pooling, name)
        if spec.adapter_base is not None:
            self._encoders[name] = self._load_adapter(name, path)
        elif self.backend == "torch":
            from sprachbund_router.encoder import SentenceEncoder

            self._encoders[name] = SentenceEncoder.from_pretrained(path, self.config.pooling, spec, device=self.device)
        else:
            from sprachbund_router.onnx_encoder import OnnxSentenceEncoder

            self._encoders[name] = OnnxSentenceEncoder(path, self.config.pooling, spec, self.backend)
        return self._encoders[name]

    def _load_adapter(self, name: str, path: Path) -> Encoder:
        """An adapter encoder: its base (loaded once, shared) with the adapter's LoRA weights or
        trained top layers (:mod:`sprachbund_router.top_layers`)."""
        spec = self.config.encoders[name]
        if is_top_layers(path):
            return self._load_top_layers(name, path)
        if self.backend != "torch":
            raise CheckpointError(f"encoder {name!r} is a LoRA adapter, which the {self.backend} backend cannot run; "
                                  "use backend='torch'")
        from sprachbund_router.adapters import apply_lora
        from sprachbund_router.encoder import SentenceEncoder

        base = self._load_encoder(spec.adapter_base)  # type: ignore[arg-type]
        assert isinstance(base, SentenceEncoder)
        try:
            model = apply_lora(base.model, path)
        except CheckpointError as err:
            raise CheckpointError(f"encoder {name!r}: {err}") from err
        return SentenceEncoder(model, base.tokenizer, self.config.pooling, text_prefix=spec.text_prefix, max_length=spec.max_length)

    def _load_top_layers(self, name: str, path: Path) -> Encoder:
        """A top-layer encoder on its base (loaded once): torch shares the base's lower layers;
        the ONNX backends run the graph exported into its folder with the base's tokenizer and
        token-embedding table."""
        spec = self.config.encoders[name]
        base = self._load_encoder(spec.adapter_base)  # type: ignore[arg-type]
        try:
            if self.backend == "torch":
                from sprachbund_router.encoder import SentenceEncoder

                assert isinstance(base, SentenceEncoder)
                model = apply_top_layers(base.model, path)
                return SentenceEncoder(model, base.tokenizer, self.config.pooling, text_prefix=spec.text_prefix,
                                       max_length=spec.max_length)
            from sprachbund_router.onnx_encoder import OnnxSentenceEncoder

            assert isinstance(base, OnnxSentenceEncoder)
            return OnnxSentenceEncoder(path, self.config.pooling, spec, self.backend, base=base)
        except CheckpointError as err:
            raise CheckpointError(f"encoder {name!r}: {err}") from err

    # ------------------------------------------------------------------ routing
    @property
    def identifiable_languages(self) -> list[str]:
        """Router languages every identifier of the routing rules can name (others need ``lang=``)."""
        known = set.intersection(*(set(i.languages) for i in self._identifiers.values()))
        return [lang for lang in self.config.languages if lang in known]

    def identify(self, texts: str | Sequence[str]) -> list[LanguageGuess]:
        """Identify the language of each text (restricted to this router's languages)."""
        items = validate_texts(texts)
        rules, default = self.config.language_id.rules()
        return [LanguageGuess(d.language, d.confidence, d.reason)
                for d in decide_by_length(self._identifiers, rules, default, items, self._sprachbund_of, "language")]

    def route(self, texts: str | Sequence[str], lang: str | Sequence[str | None] | None = None) -> list[Route]:
        """Decide the sprachbund and encoder of each text.

        A given ``lang`` skips identification (it must be a router language). Texts whose
        language is unknown or identified with low confidence go to the fallback encoder,
        and their route says so.
        """
        items = validate_texts(texts)
        return self._route(items, validate_langs(lang, len(items)))

    def _route(self, items: list[str], langs: list[str | None]) -> list[Route]:
        cfg = self.config
        for lang in set(langs) - {None}:
            cfg.sprachbund_of(lang)  # type: ignore[arg-type]  # raises UnknownLanguageError
        todo = [i for i, lang in enumerate(langs) if lang is None]
        lid = cfg.language_id
        rules, default = lid.rules()
        guesses = dict(zip(todo, decide_by_length(self._identifiers, rules, default, [items[i] for i in todo],
                                                  self._sprachbund_of, lid.level))) if todo else {}
        routes = []
        for i, lang in enumerate(langs):
            if lang is not None:
                routes.append(Route(lang, cfg.sprachbund_of(lang), cfg.encoder_of(lang), 1.0))
                continue
            g = guesses[i]
            if g.reason is not None or g.sprachbund is None:
                routes.append(Route(g.language, None, cfg.fallback_encoder, g.confidence, True, g.reason))
            else:
                encoder = cfg.language_encoders.get(g.language or "", cfg.sprachbund_encoders[g.sprachbund])
                routes.append(Route(g.language, g.sprachbund, encoder, g.confidence))
        return routes

    # ------------------------------------------------------------------ vectors
    def encode(
        self,
        sentences: str | Sequence[str] | None = None,
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        output_value: str | None = "sentence_embedding",
        precision: str = "float32",
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        device: str | None = None,
        normalize_embeddings: bool = True,
        truncate_dim: int | None = None,
        *,
        inputs: str | Sequence[str] | None = None,
        lang: str | Sequence[str | None] | None = None,
        normalize: bool | None = None,
        progress: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        """Embed texts with their sprachbund encoders (sentence-transformers' signature, 5 and 6).

        Sentence-transformers and mteb callers can pass their usual keywords. The router's own
        text prefix is always used, so ``prompt`` / ``prompt_name`` are refused rather than
        silently changing the vectors; other keywords (``task_metadata``...) are ignored.

        Args:
            sentences: one text (a 1-d vector is returned) or a list of texts (sentence-transformers
                6 calls it ``inputs``; either name works).
            batch_size: texts per forward pass.
            show_progress_bar: show a progress bar (alias ``progress``).
            output_value: only ``"sentence_embedding"``.
            precision: ``"float32"``, or ``"int8"`` / ``"uint8"`` / ``"binary"`` / ``"ubinary"``
                (sentence-transformers' ``quantize_embeddings``, calibrated on these vectors).
            convert_to_numpy / convert_to_tensor: return a numpy array (default) or a torch tensor.
            device: torch device of a returned tensor.
            normalize_embeddings: L2-normalise the vectors (default True: the served vectors are
                compared with cosine; alias ``normalize``).
            truncate_dim: keep the first dimensions only (Matryoshka style; default the router's
                ``truncate_dim`` attribute, None: all), renormalised when normalising.
            lang: skip identification: one code for all texts or one per text (None = identify).

        Returns:
            float32 array ``[n_texts, dim]`` in input order (``[dim]`` for a single string).
        """
        sentences = _one_of(sentences, inputs)
        truncate_dim = _check_encode_options(prompt, prompt_name, output_value, precision,
                                             self.truncate_dim if truncate_dim is None else truncate_dim)
        if kwargs:
            logger.debug("encode: ignoring keywords %s", sorted(kwargs))
        normalize = normalize_embeddings if normalize is None else normalize
        progress = bool(show_progress_bar if progress is None else progress)
        items = validate_texts(sentences)  # type: ignore[arg-type]
        routes = self._route(items, validate_langs(lang, len(items)))
        vecs = self._encode_routed(items, [r.encoder for r in routes], routes, batch_size, normalize, progress)
        vecs = _truncate_and_quantize(vecs, truncate_dim, normalize, precision)
        if isinstance(sentences, str):
            vecs = vecs[0]
        if convert_to_tensor or not convert_to_numpy:
            import torch

            tensor = torch.from_numpy(np.ascontiguousarray(vecs))
            tensor = tensor.to(device) if device else tensor
            # sentence-transformers: convert_to_numpy=False (and no tensor) gives a list of 1-d tensors
            return tensor if convert_to_tensor or isinstance(sentences, str) else list(tensor)
        return vecs

    def apply_space(self, vectors: Any, langs: str | Sequence[str | None] | None = None, encoder: str | None = None,
                    *, routes: Sequence[Route] | None = None) -> np.ndarray:
        """The router's served vectors from an encoder's own vectors.

        For users of the encoder repositories with plain sentence-transformers: the router's
        vector space (each row's language mean removed, the language subspace projected out, its
        map applied) on top of ``SentenceTransformer(encoder_repo).encode(texts)``::

            vecs = router.apply_space(SentenceTransformer("org/router-base").encode(texts), routes=router.route(texts))

        gives what ``router.encode(texts)`` gives for texts routed to that encoder (fallback texts
        included: their route says so, and they take the fallback path).

        Args:
            vectors: ``[n, dim]`` vectors of ``encoder`` (arrays or tensors; normalised or not).
            langs: one language for all rows or one per row; None (or a None row): the fallback path.
            encoder: the router encoder that made them (default: the shared encoder).
            routes: instead of ``langs``, each row's :class:`Route` (``router.route(texts)``):
                its language, and the fallback path where the route fell back.

        Raises:
            UnknownLanguageError: a language outside every sprachbund.
            ValueError: both ``langs`` and ``routes``, or a number of routes other than of rows.
        """
        name = encoder or self.config.shared_encoder
        if name not in self.config.encoders:
            raise KeyError(f"no encoder {name!r}; this router has {sorted(self.config.encoders)}")
        vecs = np.atleast_2d(_as_numpy(vectors)).astype(np.float32)
        if routes is not None:
            if langs is not None:
                raise ValueError("give langs or routes, not both")
            if len(routes) != len(vecs):
                raise ValueError(f"{len(routes)} routes for {len(vecs)} vectors")
            rows: list[str | None] = [r.language for r in routes]
            fallback = [r.fallback or r.language is None for r in routes]
        else:
            rows = validate_langs(langs, len(vecs))
            fallback = [lang is None for lang in rows]
        for lang in set(rows) - {None}:
            self.config.sprachbund_of(lang)  # type: ignore[arg-type]  # raises UnknownLanguageError
        space = self.spaces.get(name)
        if space is None:
            return unit(vecs)
        return space.serve(vecs, rows, fallback)

    def encode_routes(
        self, texts: Sequence[str], routes: Sequence[Route], batch_size: int = 32, normalize: bool = True
    ) -> np.ndarray:
        """Embed texts along routes decided elsewhere (e.g. to force the fallback path).

        Each text is embedded by its route's encoder, then centred and mapped by the route's
        language and sprachbund when that encoder has a space.
        """
        items = validate_texts(list(texts))
        if len(routes) != len(items):
            raise ValueError(f"{len(items)} texts but {len(routes)} routes")
        return self._encode_routed(items, [r.encoder for r in routes], list(routes), batch_size, normalize)

    def _encode_routed(
        self, items: list[str], encoders: list[str], routes: Sequence[Route], batch_size: int, normalize: bool,
        progress: bool = False,
    ) -> np.ndarray:
        # every row takes its own route's encoder where it serves the same space as the one asked for
        encoders = [self.config.row_encoder(e, r.encoder) for e, r in zip(encoders, routes)]
        # one pass per set of weights: names that share an encoder (loaded once) are batched together
        groups: dict[Encoder, list[int]] = defaultdict(list)
        for i, name in enumerate(encoders):
            groups[self.encoder(name)].append(i)
        out: np.ndarray | None = None
        for encoder, idx in groups.items():
            vecs = encoder.encode([items[i] for i in idx], batch_size, normalize, progress)
            if out is None:
                out = np.empty((len(items), vecs.shape[1]), dtype=np.float32)
            out[idx] = vecs
        assert out is not None
        return self._apply_spaces(out, encoders, routes, normalize)

    def _apply_spaces(self, vecs: np.ndarray, encoders: Sequence[str], routes: Sequence[Route], normalize: bool) -> np.ndarray:
        """Centre and map rows whose encoder has a space (by each row's own route)."""
        for name, space in self.spaces.items():
            rows = [i for i, e in enumerate(encoders) if e == name]
            if rows:
                rs = [routes[i] for i in rows]
                vecs[rows] = space.serve(vecs[rows], [r.language for r in rs], [r.fallback for r in rs], normalize)
        return vecs

    # ------------------------------------------------------------------ retrieval

    # ------------------------------------------------------------------ classification
    @property
    def tasks(self) -> list[str]:
        """Tasks with trained heads."""
        return sorted(self.config.heads)

    def head(self, task: str, sprachbund: str) -> ClassificationHead:
        """The head of ``task`` for ``sprachbund`` (``"*"`` = head for fallback texts)."""
        if task not in self.config.heads:
            raise MissingHeadError(
                f"this router has no head for task {task!r}; available: {self.tasks or 'none (train heads with sbr train)'}"
            )
        per_group = self.config.heads[task]
        if sprachbund not in per_group:
            raise MissingHeadError(f"task {task!r} has no head for sprachbund {sprachbund!r} (has {sorted(per_group)})")
        key = (task, sprachbund)
        with self._lock:
            if key not in self._heads:
                rel = per_group[sprachbund]
                if rel in self._fitted_heads:  # trained by fit_head in this session
                    self._heads[key] = self._fitted_heads[rel]
                else:
                    self._heads[key] = ClassificationHead.load(self._local_path(rel, f"heads.{task}.{sprachbund}"))
            return self._heads[key]

    def fit_head(
        self,
        task: str,
        texts: Sequence[str],
        labels: Sequence[Any],
        languages: str | Sequence[str | None] | None = None,
        setting: str = "english",
        per: str = "all",
        batch_size: int = 32,
    ) -> dict[str, dict[str, Any]]:
        """Train heads for ``task`` on the user's labelled texts (see :mod:`sprachbund_router.head_fitting`).

        The heads see the vectors the router serves (every sprachbund in one space), so heads
        trained on English text classify every language (``setting="english"``, the paper's
        zero-shot setting); ``"pivot"`` and ``"every"`` train each sprachbund's head on its pivot
        language (or, where the data lacks it, the data's language closest to the sprachbund's
        members) or on all its languages. Regularisation is chosen by cross-validation. The heads
        serve :meth:`classify` at once and are written by :meth:`save_pretrained`.

        Args:
            task: the task's name (a folder name: letters, digits, ``._:-``); an existing task of
                that name is replaced.
            texts / labels: the labelled texts (labels: strings or integers, at least two classes).
            languages: one language for all texts or one per text (None: identified).
            setting: ``"english"``, ``"pivot"`` or ``"every"``.
            per: ``"all"`` (one head for every sprachbund: it beat per-sprachbund heads at the same
                data on the LibreOffice-help task, docs/results/classification.md) or
                ``"sprachbund"`` (a head per sprachbund plus the fallback head).

        Returns:
            head key (sprachbund or ``"*"``) -> its training record (C, cross-validated log loss,
            rows, class counts).

        Raises:
            InvalidInputError: bad texts or labels (one class, None, NaN, another count), a
                setting without data (no English text for ``"english"``), or a label set that
                differs between the sprachbunds' heads.
        """
        from sprachbund_router.head_fitting import check_labels, check_task, data_pivots, fit_logistic, training_rows

        check_task(task)
        items = validate_texts(texts)
        names = check_labels(labels, len(items))
        routes = self._route(items, validate_langs(languages, len(items)))
        langs = [r.language for r in routes]
        pivots = data_pivots(self.config.sprachbunds, dict(self.config.pivots), set(filter(None, langs)), self.languages,
                             self.language_vectors)
        rows_of = training_rows(setting, per, langs, [r.sprachbund for r in routes], list(self.config.sprachbunds), pivots)
        label_set = sorted(set(names))
        for key, rows in rows_of.items():
            missing = sorted(set(label_set) - {names[i] for i in rows})
            if missing and key != FALLBACK_HEAD:
                raise InvalidInputError(f"the {setting!r} training texts of sprachbund {key!r} lack label(s) {missing}: every "
                                        "head must know every label (add texts of those labels, or use per='all')")
        vecs = self._encode_routed(items, [r.encoder for r in routes], routes, batch_size, True)
        heads: dict[str, str] = {}
        report: dict[str, dict[str, Any]] = {}
        fitted: dict[tuple[int, ...], Any] = {}
        for key, rows in rows_of.items():
            train_langs = sorted({lang for lang in (langs[i] for i in rows) if lang})
            config = HeadConfig(task=task, labels=label_set, setting=setting, train_languages=train_langs)
            if tuple(rows) not in fitted:  # the same rows (per="all", or the English setting) train one head
                fitted[tuple(rows)] = fit_logistic(vecs[rows], [names[i] for i in rows], label_set, config)
            head = fitted[tuple(rows)].head
            rel = f"heads/{task.replace(':', '-')}/{'fallback' if key == FALLBACK_HEAD else key}"
            heads[key] = rel
            self._fitted_heads[rel] = head
            report[key] = {**head.config.metrics, "languages": train_langs}
        with self._lock:
            self.config.heads[task] = heads
            for key in [k for k in self._heads if k[0] == task]:
                del self._heads[key]
        logger.info("task %s: %d head(s) trained (%s setting, per %s)", task, len(heads), setting, per)
        return report

    def classify(
        self,
        texts: str | Sequence[str],
        task: str,
        lang: str | Sequence[str | None] | None = None,
        batch_size: int = 32,
    ) -> list[Classification]:
        """Predict ``task`` labels with the head of each text's sprachbund.

        Texts that fell back (unknown language) use the task's ``"*"`` head when the router
        has one; otherwise :class:`MissingHeadError` names them (pass ``lang=``).
        """
        items = validate_texts(texts)
        routes = self._route(items, validate_langs(lang, len(items)))
        heads = {}
        for i, r in enumerate(routes):
            key = r.sprachbund or FALLBACK_HEAD
            if key not in heads:
                try:
                    heads[key] = self.head(task, key)
                except MissingHeadError as err:
                    if key == FALLBACK_HEAD:
                        raise MissingHeadError(
                            f"text {i} fell back ({r.reason}) and task {task!r} has no fallback head; pass lang="
                        ) from err
                    raise
        vecs = self._encode_routed(items, [r.encoder for r in routes], routes, batch_size, True)
        out: list[Classification | None] = [None] * len(items)
        for key, head in heads.items():
            rows = [i for i, r in enumerate(routes) if (r.sprachbund or FALLBACK_HEAD) == key]
            if head.input_dim != vecs.shape[1]:
                raise CheckpointError(f"head heads.{task}.{key} ({self.config.heads[task][key]}) expects {head.input_dim}-d "
                                      f"vectors but the encoder gives {vecs.shape[1]}-d: it was trained on another encoder")
            probs = head.predict_proba(vecs[rows])
            for j, row in enumerate(rows):
                best = int(probs[j].argmax())
                labels = head.config.labels
                out[row] = Classification(
                    labels[best], float(probs[j, best]), dict(zip(labels, probs[j].tolist())), routes[row]
                )
        return [c for c in out if c is not None]

