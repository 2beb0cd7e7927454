"""The router's vector space: language-centred vectors and per-sprachbund linear maps.

An encoder's pooled vectors carry, besides meaning, a large component that only says which
language a text is in (the paper's language representation: the mean sentence vector of a
language). The router removes it and, optionally, maps each sprachbund into one shared
space anchored on one language (English), fitted in closed form on the sprachbund's
translation pairs. The vector served for a text of language ``l`` in sprachbund ``s``,
embedded by encoder ``E`` that has a space, is::

    v = normalise(E(text))            # the encoder's pooled vector
    v = v - mean[l]                   # centring (see SpaceSpec.missing_mean / fallback_mean)
    v = v - (v @ U) @ U.T             # language-subspace removal (LSAR), on the rows subspace_rows says
    v = v @ maps[l or s]              # the language's own map, else its sprachbund's (not the anchor)
    v = normalise(v)

Texts of every sprachbund land in the anchor's space, so vectors of different sprachbunds
stay comparable with cosine.

A space lives in one safetensors file in the router directory (``spaces/<encoder>.safetensors``):

* ``means`` ``[n, dim]``: rows named by the metadata list ``mean_keys``
  (``lang:<code>``, ``sprachbund:<name>``, ``global``);
* ``map.<name>`` ``[dim, dim]``: linear maps (row vectors are multiplied on the right);
* ``subspace`` ``[dim, r]``: orthonormal directions spanned by the language means (Xie et al.,
  EMNLP 2022: low-rank subspace for language-agnostic representations), projected out;
* ``probe_vectors`` ``[p, dim]``: the encoder's own vectors of the metadata ``probe_texts``,
  used to refuse a space fitted on another encoder.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sprachbund_router.backend import PROBE_MIN_COSINE
from sprachbund_router.errors import CheckpointError
from sprachbund_router.tensors import load_tensors, save_tensors

logger = logging.getLogger(__name__)

def unit(v: Any) -> Any:
    """Rows scaled to unit length (a zero row stays zero): the one normalisation of served
    vectors, for numpy arrays and torch tensors alike (so a training loss can run the same rule)."""
    if isinstance(v, np.ndarray):
        return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def centre(v: Any, means: Any) -> Any:
    """Step 2: subtract each row's language mean (rows of ``means`` aligned with ``v``; zero rows: none)."""
    return v - means


def remove_subspace(v: Any, u: Any) -> Any:
    """Step 3: project out the orthonormal directions ``u`` ``[dim, r]`` (LSAR)."""
    return v - (v @ u) @ u.T


def apply_map(v: Any, m: Any) -> Any:
    """Step 4: a linear map ``[dim, dim]`` (row vectors multiplied on the right)."""
    return v @ m


#: The served vector, in order (:meth:`VectorSpace.serve` runs them; every caller goes through it).
SERVE_STEPS = (("normalise", unit), ("centre", centre), ("remove subspace", remove_subspace), ("map", apply_map),
               ("normalise", unit))


@dataclass
class ServePlan:
    """Per row of a batch: the mean it subtracts (``means`` aligned with the rows, None: no row
    has one), the rows whose language subspace is removed, and the rows of each map."""

    means: np.ndarray | None
    projected: list[int]
    maps: dict[str, list[int]]


def _array_like(v: Any) -> Any:
    """A converter of numpy arrays to ``v``'s kind (torch tensors on its device and dtype)."""
    if isinstance(v, np.ndarray):
        return lambda a: a
    import torch

    return lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32), device=v.device).to(v.dtype)


def _set_rows(out: Any, rows: list[int], values: Any) -> Any:
    """``out`` with ``rows`` replaced (in place for numpy; out of place for torch, so gradients flow)."""
    if isinstance(out, np.ndarray):
        out[rows] = values
        return out
    import torch

    return out.index_put((torch.as_tensor(rows, device=out.device),), values)


MeanChoice = Literal["sprachbund", "global", "none"]
MEAN_CHOICES = ("sprachbund", "global", "none")
#: Rows whose language subspace is removed: none, all, or those without a mean of their own language.
SUBSPACE_ROWS = ("none", "all", "without own mean")


@dataclass
class SpaceSpec:
    """How the vectors of one encoder are turned into served vectors (``router_config.json``, ``spaces``).

    Attributes:
        path: safetensors file of the space, relative to the router directory.
        centring: subtract the language's mean vector before normalising.
        missing_mean: mean used for a router language without its own mean: its
            sprachbund's, the global one, or none.
        fallback_mean: mean used for texts that fell back (language unknown or unsure):
            ``"global"`` or ``"none"``.
        anchor: language whose (centred) vectors define the shared space; it is never mapped.
        sprachbund_maps: sprachbund -> name of the map its languages use (``map.<name>`` in
            the file), or None for no map. Sprachbunds not listed use no map.
        fallback_map: map for texts that fell back (None: no map).
        subspace_rows: where the language subspace (tensor ``subspace``) is projected out:
            ``"none"``, ``"all"`` rows, or rows ``"without own mean"`` (fallback texts and
            languages that have no mean of their own).
        language_maps: language -> map name, taking precedence over its sprachbund's map.
        provenance: how the space was fitted and what it measured (free form).
    """

    path: str
    centring: bool = True
    missing_mean: MeanChoice = "sprachbund"
    fallback_mean: MeanChoice = "global"
    anchor: str | None = "en"
    sprachbund_maps: dict[str, str | None] = field(default_factory=dict)
    fallback_map: str | None = None
    subspace_rows: str = "none"
    language_maps: dict[str, str] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path:
            raise ValueError(f"space path must be a non-empty string, got {self.path!r}")
        if not isinstance(self.centring, bool):
            raise ValueError(f"space centring must be true or false, got {self.centring!r}")
        if self.missing_mean not in MEAN_CHOICES:
            raise ValueError(f"space missing_mean must be one of {MEAN_CHOICES}, got {self.missing_mean!r}")
        if self.fallback_mean not in ("global", "none"):
            raise ValueError(f"space fallback_mean must be 'global' or 'none', got {self.fallback_mean!r}")
        if not isinstance(self.sprachbund_maps, dict):
            raise ValueError(f"space sprachbund_maps must be an object, got {self.sprachbund_maps!r}")
        for group, name in self.sprachbund_maps.items():
            if name is not None and not isinstance(name, str):
                raise ValueError(f"space sprachbund_maps.{group} must be a map name or null, got {name!r}")
        for key in ("anchor", "fallback_map"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"space {key} must be a string or null, got {value!r}")
        if self.subspace_rows not in SUBSPACE_ROWS:
            raise ValueError(f"space subspace_rows must be one of {SUBSPACE_ROWS}, got {self.subspace_rows!r}")
        if not isinstance(self.language_maps, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.language_maps.items()):
            raise ValueError(f"space language_maps must be an object of language -> map name, got {self.language_maps!r}")
        if not isinstance(self.provenance, dict):
            raise ValueError(f"space provenance must be an object, got {self.provenance!r}")

    def parts(self, sprachbund: str) -> list[str]:
        """What this space does to the vectors of ``sprachbund`` (recorded per sprachbund)."""
        out = ["centring"] if self.centring else []
        if self.subspace_rows != "none":
            out.append(f"subspace removal ({self.subspace_rows})")
        name = self.sprachbund_maps.get(sprachbund)
        if name:
            out.append(f"map:{name}")
        return out


class VectorSpace:
    """A loaded space: means and maps, applied to rows of a mixed batch.

    Args:
        spec: the space's settings.
        means: key (``lang:xx``, ``sprachbund:name``, ``global``) -> mean vector.
        maps: name -> ``[dim, dim]`` matrix.
        sprachbund_of: language -> sprachbund, for the sprachbund mean of a language
            without its own.
        probe_texts / probe_vectors: the fitting encoder's raw vectors of a few texts.
    """

    def __init__(
        self,
        spec: SpaceSpec,
        means: Mapping[str, np.ndarray],
        maps: Mapping[str, np.ndarray],
        sprachbund_of: Mapping[str, str],
        probe_texts: Sequence[str] = (),
        probe_vectors: np.ndarray | None = None,
        subspace: np.ndarray | None = None,
    ) -> None:
        self.spec = spec
        self.subspace = None if subspace is None else np.asarray(subspace, dtype=np.float32)
        self.means = {k: np.asarray(v, dtype=np.float32) for k, v in means.items()}
        self.maps = {k: np.asarray(v, dtype=np.float32) for k, v in maps.items()}
        self.sprachbund_of = dict(sprachbund_of)
        self.probe_texts = list(probe_texts)
        self.probe_vectors = probe_vectors
        dims = {v.shape[-1] for v in self.means.values()} | {m.shape[0] for m in self.maps.values()}
        if self.subspace is not None:
            if self.subspace.ndim != 2:
                raise CheckpointError(f"space {spec.path}: subspace has shape {self.subspace.shape}, expected [dim, rank]")
            dims.add(self.subspace.shape[0])
        if len(dims) > 1:
            raise CheckpointError(f"space {spec.path} mixes vector dimensions {sorted(dims)} (means and maps must agree)")
        self.dim: int | None = dims.pop() if dims else None
        for name, m in self.maps.items():
            if m.ndim != 2 or m.shape[0] != m.shape[1]:
                raise CheckpointError(f"space {spec.path}: map {name!r} has shape {m.shape}, expected square [dim, dim]")
        if spec.subspace_rows != "none" and self.subspace is None:
            raise CheckpointError(f"space {spec.path}: subspace_rows is {spec.subspace_rows!r} but the file has no subspace")
        wanted = {n for n in [*spec.sprachbund_maps.values(), *spec.language_maps.values(), spec.fallback_map] if n}
        missing = sorted(wanted - set(self.maps))
        if missing:
            raise CheckpointError(f"space {spec.path}: the config names map(s) {missing} that the file lacks (has {sorted(self.maps)})")
        if spec.fallback_mean == "global" and spec.centring and "global" not in self.means:
            raise CheckpointError(f"space {spec.path}: fallback_mean is 'global' but the file has no global mean")

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, directory: Path, spec: SpaceSpec, sprachbund_of: Mapping[str, str]) -> VectorSpace:
        """Read the space file named in ``spec`` from the router ``directory``.

        Raises:
            CheckpointError: missing or corrupt file, wrong shapes, maps the config names but
                the file lacks.
        """
        tensors, meta = load_tensors(directory / spec.path)
        if "means" not in tensors or "mean_keys" not in meta:
            raise CheckpointError(f"{directory / spec.path} is not a space file: expected tensor 'means' and metadata 'mean_keys'")
        keys = list(meta["mean_keys"])
        if tensors["means"].ndim != 2 or len(keys) != tensors["means"].shape[0]:
            raise CheckpointError(f"{directory / spec.path} is corrupt: {len(keys)} mean keys for means of shape {tensors['means'].shape}")
        means = dict(zip(keys, tensors["means"]))
        maps = {k[len("map."):]: v for k, v in tensors.items() if k.startswith("map.")}
        return cls(spec, means, maps, sprachbund_of, meta.get("probe_texts", []), tensors.get("probe_vectors"),
                   tensors.get("subspace"))

    def save(self, directory: Path) -> Path:
        """Write the space file to ``directory / spec.path``."""
        keys = sorted(self.means)
        tensors = {"means": np.stack([self.means[k] for k in keys]) if keys else np.zeros((0, self.dim or 0), np.float32)}
        tensors.update({f"map.{k}": v for k, v in self.maps.items()})
        meta: dict[str, Any] = {"mean_keys": keys, "probe_texts": self.probe_texts}
        if self.probe_vectors is not None:
            tensors["probe_vectors"] = np.asarray(self.probe_vectors, dtype=np.float32)
        if self.subspace is not None:
            tensors["subspace"] = self.subspace
        path = directory / self.spec.path
        save_tensors(path, tensors, meta)
        return path

    def check_encoder(self, encoder: Any, backend: str = "torch", name: str = "") -> None:
        """Refuse an encoder whose vectors differ from the ones the space was fitted on.

        Raises:
            CheckpointError: other dimension, or a probe text's vector below the cosine bound.
        """
        dim = int(getattr(encoder, "dim", 0) or 0)
        if self.dim is not None and dim and dim != self.dim:
            raise CheckpointError(
                f"space {self.spec.path} has dimension {self.dim} but encoder {name!r} gives {dim}: it was fitted on another base"
            )
        if self.probe_vectors is None or not self.probe_texts:
            return
        got = encoder.encode(self.probe_texts, normalize=True)
        want = self.probe_vectors / np.linalg.norm(self.probe_vectors, axis=1, keepdims=True)
        cos = (got * want).sum(1)
        bound = PROBE_MIN_COSINE.get(backend, 0.999)
        if not float(cos.min()) >= bound:  # NaN fails too
            raise CheckpointError(
                f"space {self.spec.path} was fitted on another encoder than {name!r}: probe vectors agree only at "
                f"cosine {float(cos.min()):.4f} (needs {bound}); refit it (sbr train build) or use the matching base"
            )

    # ------------------------------------------------------------------ applying
    def mean_for(self, language: str | None, fallback: bool) -> np.ndarray | None:
        """The mean subtracted from a text of ``language`` (None: nothing is subtracted)."""
        if not self.spec.centring:
            return None
        if fallback or language is None:
            return self.means.get("global") if self.spec.fallback_mean == "global" else None
        own = self.means.get(f"lang:{language}")
        if own is not None:
            return own
        choice = self.spec.missing_mean
        if choice == "sprachbund":
            group = self.sprachbund_of.get(language)
            found = self.means.get(f"sprachbund:{group}") if group else None
            return found if found is not None else self.means.get("global")
        return self.means.get("global") if choice == "global" else None

    def map_for(self, language: str | None, sprachbund: str | None, fallback: bool) -> str | None:
        """Name of the map applied to a text (None: no map)."""
        if fallback or sprachbund is None:
            return self.spec.fallback_map
        if language is not None and language == self.spec.anchor:
            return None
        if language is not None and language in self.spec.language_maps:
            return self.spec.language_maps[language]
        return self.spec.sprachbund_maps.get(sprachbund)

    def removes_subspace(self, language: str | None, fallback: bool) -> bool:
        """Whether a text's language subspace is projected out."""
        rows = self.spec.subspace_rows
        if rows == "none" or self.subspace is None:
            return False
        if rows == "all":
            return True
        return fallback or language is None or not self.spec.centring or f"lang:{language}" not in self.means

    def routes_of(
        self, languages: Sequence[str | None], fallback: Sequence[bool] | None = None,
    ) -> tuple[list[str | None], list[bool]]:
        """Per row, the sprachbund and fallback flag of a text of a known language: a row
        falls back when it says so or has no language; otherwise its sprachbund is its
        language's (None for a language outside every sprachbund)."""
        flags = [False] * len(languages) if fallback is None else [bool(f) for f in fallback]
        if len(flags) != len(languages):
            raise ValueError(f"{len(languages)} languages but {len(flags)} fallback flags")
        flags = [f or lang is None for lang, f in zip(languages, flags)]
        groups = [None if f else self.sprachbund_of.get(lang) for lang, f in zip(languages, flags)]  # type: ignore[arg-type]
        return groups, flags

    def serve(
        self,
        vectors: np.ndarray,
        languages: Sequence[str | None],
        fallback: Sequence[bool] | None = None,
        normalize: bool = True,
    ) -> np.ndarray:
        """The vectors the router serves for an encoder's raw ``vectors`` (rows of a mixed batch).

        This is the one definition of a served vector: the router's ``encode``, its indexes, the
        heads' training and every evaluation call it. Each row is centred by its own language
        (or takes the fallback path when ``fallback`` says so or its language is None) and
        mapped by its language's sprachbund.

        Args:
            vectors: the encoder's vectors ``[n, dim]`` (normalised or not; they are
                normalised first, as the space was fitted on unit vectors).
            languages: per row, the text's language (None: unknown).
            fallback: per row, whether the text fell back (default: none did).
            normalize: L2-normalise the result.
        """
        groups, flags = self.routes_of(languages, fallback)
        return self._apply(vectors, languages, groups, flags, normalize)

    def _apply(
        self,
        vectors: Any,
        languages: Sequence[str | None],
        sprachbunds: Sequence[str | None],
        fallback: Sequence[bool],
        normalize: bool = True,
    ) -> Any:
        """Run :data:`SERVE_STEPS` on each row by its own language and sprachbund (see :meth:`serve`).

        ``vectors`` may be a numpy array or a torch tensor (then the result is a tensor and
        gradients flow through it: a model can be trained through the space)."""
        if len(vectors) != len(languages):
            raise ValueError(f"{len(vectors)} vectors but {len(languages)} languages")
        if self.dim is not None and vectors.shape[1] != self.dim:
            raise CheckpointError(f"space {self.spec.path} has dimension {self.dim}, vectors have {vectors.shape[1]}")
        plan = self.plan(languages, sprachbunds, fallback)
        as_input = _array_like(vectors)
        out = unit(vectors if not isinstance(vectors, np.ndarray) else vectors.astype(np.float32, copy=False))
        if plan.means is not None:
            out = centre(out, as_input(plan.means))
        if plan.projected:
            out = _set_rows(out, plan.projected, remove_subspace(out[plan.projected], as_input(self.subspace)))
        for name, rows in plan.maps.items():
            out = _set_rows(out, rows, apply_map(out[rows], as_input(self.maps[name])))
        return unit(out) if normalize else out

    def plan(self, languages: Sequence[str | None], sprachbunds: Sequence[str | None], fallback: Sequence[bool]) -> ServePlan:
        """What each row goes through: its mean, whether its subspace is removed, its map."""
        rows_mean: list[np.ndarray] = []
        any_mean = False
        projected: list[int] = []
        by_map: dict[str, list[int]] = {}
        zero = np.zeros(self.dim or 0, np.float32)
        for i, (lang, group, fb) in enumerate(zip(languages, sprachbunds, fallback)):
            mean = self.mean_for(lang, fb)
            any_mean = any_mean or mean is not None
            rows_mean.append(zero if mean is None else mean)
            if self.removes_subspace(lang, fb):
                projected.append(i)
            name = self.map_for(lang, group, fb)
            if name is not None:
                by_map.setdefault(name, []).append(i)
        means = np.stack(rows_mean).astype(np.float32) if any_mean and rows_mean else None
        return ServePlan(means, projected, by_map)

    def pull_back(
        self,
        targets: np.ndarray,
        languages: Sequence[str | None],
        fallback: Sequence[bool] | None = None,
    ) -> np.ndarray:
        """Unit vectors that :meth:`serve` turns into ``targets`` (rows of a mixed batch).

        The inverse of :meth:`serve` on the unit sphere: for a row with mean ``m`` and map
        ``M``, the vector ``v = m + s * normalise(t @ pinv(M))`` with ``s > 0`` chosen so that
        ``|v| = 1`` (``|m| < 1`` for a mean of unit vectors, so exactly one such ``s``). An
        adapter trained towards pulled-back targets is served through the same space as the
        base (its vectors centred and mapped like the base's), so before training it serves
        exactly the space's vectors. A target whose map is singular is matched on the map's
        range only.

        Args:
            targets: ``[n, dim]`` wanted served vectors (normalised here).
            languages / fallback: per row, as for :meth:`serve`.
        """
        n = len(targets)
        if self.spec.subspace_rows != "none":
            raise ValueError(f"space {self.spec.path} projects out a subspace, which cannot be inverted: "
                             "residual adapters need a space without subspace removal")
        if len(languages) != n:
            raise ValueError(f"{n} targets but {len(languages)} languages")
        sprachbunds, fallback = self.routes_of(languages, fallback)
        t = np.asarray(targets, dtype=np.float64)
        t = unit(t)
        out = np.empty_like(t)
        by_map: dict[str | None, list[int]] = {}
        for i, (lang, group, fb) in enumerate(zip(languages, sprachbunds, fallback)):
            by_map.setdefault(self.map_for(lang, group, fb), []).append(i)
        for name, rows in by_map.items():
            out[rows] = t[rows] if name is None else t[rows] @ np.linalg.pinv(self.maps[name].astype(np.float64))
        out = unit(out)
        for i, (lang, fb) in enumerate(zip(languages, fallback)):
            mean = self.mean_for(lang, fb)
            if mean is None:
                continue
            m = mean.astype(np.float64)
            mw = float(m @ out[i])
            s = -mw + np.sqrt(max(mw * mw - float(m @ m) + 1.0, 0.0))
            out[i] = m + s * out[i]
        out = unit(out)
        return out.astype(np.float32)
