"""Leave one source out: every setting of the served vectors chosen on other sources, scored on a new one.

The product promise is better vectors than the plain base model *on the user's text*, which is
never the text the router was fitted on. So each setting (pooling layer, text prefix, which
texts and how many make the language means, language-subspace removal, the map type and its
shrinkage, the scoring rule) is chosen like this, for each source ``s`` in turn
(:mod:`training.held_out_sources`):

1. every candidate is scored on the **dev half** of every other source ``s'``, with means and maps
   fitted on the train halves of every source but ``s'`` (so each dev score is itself out of
   source);
2. the candidate with the best mean dev score over the sources other than ``s`` is chosen
   (stage by stage: layer and prefix, means, subspace, maps, scoring; each stage keeps the
   earlier choices);
3. it is fitted on the train halves of every source but ``s`` and scored on the **test half** of
   ``s``: top-1 of each foreign message among *all* of ``s``'s English test messages.

The held-out source's test half never enters a choice. The shipped setting is the one chosen on
every source's dev half, fitted on every train half (its scores on the sources it was fitted on
are in-domain and labelled so).

Baselines: the plain model as its card says to run it (last layer, masked mean, ``query: `` on
both sides, normalised), and the best plain configuration (layer x prefix, no space) chosen the
same way, and in hindsight on the test halves.

The vector of a text of language ``l`` (sprachbund ``g``) under a candidate is::

    v = unit(E_layer(prefix + text)) - mean[l]     # own mean, or (no own mean) sprachbund / global mean
    v = v @ P                                      # P = I - U Uᵀ, U: top-r directions of the language means
    v = unit(v @ W[l])                             # W: none / all / sprachbund / language (shrunk to its
                                                   #    sprachbund, shrunk to all) / random groups
and scoring is cosine or ratio margin (Artetxe & Schwenk 2019, k neighbours each side).

    python -m benchmarks.loso [--sources ...] [--out benchmarks/results/loso.json]

This module is the protocol itself (what the shipped space's fit reuses); running it over every
source, its summary and the tables it writes into the README live in :mod:`benchmarks.loso`.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from sprachbund_router.index import top_k_cosine, top_k_margin
from sprachbund_router.space import SpaceSpec, VectorSpace, unit
from training.held_out_sources import read_source, source_kinds
from training.libreoffice import normalise

logger = logging.getLogger(__name__)

LAYERS = (8, 9, 10, 11, 12)
PREFIXES = ("", "query: ")
#: The base model as its card says to run it.
CARD = {"layer": 12, "prefix": "query: "}
#: A language's dev or test rows of a source count from this many rows on.
MIN_ROWS = 20
#: Fewest training texts that give a language its own mean in a fit.
MIN_MEAN_TEXTS = 30
#: Rows read per source, language and split (the first rows of each file, which are a fixed-seed
#: sample): what a 2-core CPU encodes in about half an hour (~100 short texts/s for 5 layers).
CAPS = {"train": 50, "dev": 30, "test": 60}


# ------------------------------------------------------------------------------ vectors
class LayerVectors:
    """Unit vectors of texts at every layer of :data:`LAYERS`, one file per prefix, cached on disk.

    The file name carries a fingerprint of the encoder (its vectors of a probe text), so vectors
    of another encoder are never mixed in.
    """

    def __init__(self, encoder: Any, prefix: str, directory: Path | None) -> None:
        self.encoder, self.prefix = encoder, prefix
        probe = encoder.with_prefix("").encode_layers(["The cat sleeps on the sofa. Die Katze schläft."], LAYERS)
        finger = hashlib.sha256(np.round(np.stack([probe[la] for la in LAYERS]), 4).tobytes()).hexdigest()[:12]
        tag = hashlib.sha1(prefix.encode()).hexdigest()[:6]
        self.path = directory / f"layers-{finger}-{tag}.npz" if directory else None
        self.rows: dict[str, int] = {}
        self._row_of: dict[str, int] = {}  # text -> row, so repeated lookups skip hashing
        self._parts: list[np.ndarray] = [np.zeros((0, len(LAYERS), encoder.dim), np.float16)]
        self._dirty = False
        if self.path and self.path.is_file():
            data = np.load(self.path, allow_pickle=False)
            self.rows = {k: i for i, k in enumerate(data["keys"].tolist())}
            self._parts = [data["vectors"]]

    def _row(self, text: str) -> int:
        row = self._row_of.get(text)
        if row is None:
            row = self._row_of[text] = self.rows[self.key(text)]
        return row

    @property
    def table(self) -> np.ndarray:
        """All cached vectors ``[n, layers, dim]`` (float16), row ``rows[key]``."""
        if len(self._parts) > 1:
            self._parts = [np.concatenate(self._parts)]
        return self._parts[0]

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def ensure(self, texts: Sequence[str], batch_size: int = 64, save: bool = True) -> None:
        """Encode the texts not cached yet (longest first, so batches hold similar lengths) and save."""
        todo = sorted({t for t in texts if self.key(t) not in self.rows}, key=len, reverse=True)
        if not todo:
            return
        started = time.perf_counter()
        prefixed = self.encoder.with_prefix(self.prefix)
        chunks = []
        for start in range(0, len(todo), 4096):
            part = todo[start:start + 4096]
            out = prefixed.encode_layers(part, LAYERS, batch_size, progress=False)
            chunks.append(np.stack([out[la] for la in LAYERS], axis=1).astype(np.float16))
            logger.info("prefix %r: %d / %d texts (%.0f texts/s)", self.prefix, start + len(part), len(todo),
                        (start + len(part)) / (time.perf_counter() - started))
        base = len(self.rows)
        self.rows.update({self.key(t): base + i for i, t in enumerate(todo)})
        self._parts.extend(chunks)
        self._dirty = True
        if save:
            self.save()

    def save(self) -> None:
        """Write the cache file (when anything new was encoded)."""
        if self.path and self._dirty:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            keys = sorted(self.rows, key=self.rows.get)  # type: ignore[arg-type]
            tmp = self.path.with_suffix(".tmp.npz")
            np.savez(tmp, keys=np.array(keys), vectors=self.table)
            tmp.replace(self.path)
            self._dirty = False

    def get(self, texts: Sequence[str], layer: int) -> np.ndarray:
        """Unit float32 vectors ``[n, dim]`` of ``texts`` at ``layer`` (texts not cached are encoded now)."""
        if any(t not in self._row_of and self.key(t) not in self.rows for t in texts):
            self.ensure(texts, save=False)
        li = LAYERS.index(layer)
        idx = [self._row(t) for t in texts]
        v = self.table[idx, li].astype(np.float32) if idx else np.zeros((0, self.table.shape[2]), np.float32)
        return unit(v)


# ------------------------------------------------------------------------------ data
@dataclass
class Data:
    """Rows of every source: ``rows[source][split][lang]`` -> [(text, English)]."""

    rows: dict[str, dict[str, dict[str, list[tuple[str, str]]]]]
    kinds: dict[str, str]
    sprachbund_of: dict[str, str]

    @classmethod
    def load(cls, corpus: Path, sources: Sequence[str], languages: Sequence[str], sprachbund_of: Mapping[str, str],
             caps: Mapping[str, int | None] | None = None, kinds: Mapping[str, str] | None = None) -> Data:
        """Rows of ``sources`` (at most ``caps[split]`` per language and source; None: all); ``kinds``:
        source -> ``interface`` / ``prose`` (default: the built-in sources' kinds)."""
        caps = caps or {}
        rows: dict[str, dict[str, dict[str, list[tuple[str, str]]]]] = {}
        for s in sources:
            rows[s] = {split: {} for split in ("train", "dev", "test")}
            for lang in languages:
                for split in ("train", "dev", "test"):
                    got = read_source(corpus, s, lang, split)[: caps.get(split)]
                    if got and (split == "train" or len(got) >= MIN_ROWS):
                        rows[s][split][lang] = got
        known = {**source_kinds(), **(kinds or {})}
        return cls(rows, {s: known.get(s, "interface") for s in sources}, dict(sprachbund_of))

    @property
    def sources(self) -> list[str]:
        return list(self.rows)

    def texts(self, splits: Sequence[str] = ("train", "dev", "test")) -> list[str]:
        """Every text of every row of ``splits`` (both sides)."""
        out: set[str] = set()
        for per_split in self.rows.values():
            for split, per_lang in per_split.items():
                if split not in splits:
                    continue
                for pairs in per_lang.values():
                    for x, e in pairs:
                        out.update((x, e))
        return sorted(out)


# ------------------------------------------------------------------------------ candidates
@dataclass(frozen=True)
class Choice:
    """One setting of the served vectors (see the module docstring).

    Attributes:
        layer / prefix: pooling layer and text prefix.
        centring: subtract each language's mean (English's for English).
        mean_sentences: training texts per language for its mean (pooled over the fitting sources).
        missing_mean: mean of a language without its own: ``"sprachbund"`` or ``"global"``.
        subspace_rank: directions of the language means removed (0: none; "lsar" in labels).
        subspace_rows: ``"all"`` rows, or only rows ``"without own mean"``.
        maps: ``"none"``, ``"all"``, ``"sprachbund"``, ``"language"`` (per language shrunk to its
            sprachbund, shrunk to all), ``"random"`` (random groups of the sprachbunds' sizes) or
            ``"language-random"`` (per language shrunk to its random group).
        shrink_group / shrink_language: prior weights (times the rows) of the group map towards
            the all map and of a language map towards its group's.
        scoring: ``"cosine"`` or ``"margin"``.
    """

    layer: int = 12
    prefix: str = ""
    centring: bool = True
    mean_sentences: int = 100
    missing_mean: str = "sprachbund"
    subspace_rank: int = 0
    subspace_rows: str = "all"
    maps: str = "none"
    shrink_group: float = 1.0
    shrink_language: float = 1.0
    scoring: str = "cosine"

    #: Names results files written before the space settings had one vocabulary use.
    LEGACY_NAMES: ClassVar[dict[str, str]] = {"mean_texts": "mean_sentences", "missing": "missing_mean",
                                              "lsar_rank": "subspace_rank", "lsar_rows": "subspace_rows"}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Choice:
        """A choice from a results file's ``chosen`` record (older files' names accepted)."""
        return cls(**{cls.LEGACY_NAMES.get(k, k): v for k, v in record.items()})

    def label(self) -> str:
        parts = [f"L{self.layer}", f"prefix={self.prefix.strip() or 'none'}"]
        if self.centring:
            parts.append(f"centred(n={self.mean_sentences},missing={self.missing_mean})")
        if self.subspace_rank:
            parts.append(f"lsar(r={self.subspace_rank},{self.subspace_rows})")
        if self.maps != "none":
            parts.append(f"maps={self.maps}(g={self.shrink_group:g},l={self.shrink_language:g})")
        if self.scoring != "cosine":
            parts.append(self.scoring)
        return " ".join(parts)


def plain(layer: int, prefix: str) -> Choice:
    """The base model with no space."""
    return Choice(layer=layer, prefix=prefix, centring=False, subspace_rank=0, maps="none", scoring="cosine")


#: Map groupings compared at the same data and budget on every held-out source.
COMPARED_MAPS = ("none", "all", "sprachbund", "random", "language", "language-random")
#: The stages of the choice and their candidates (each a change of the current choice).
STAGES: list[tuple[str, list[dict[str, Any]]]] = [
    ("layer and prefix", [{"layer": la, "prefix": p} for la in LAYERS for p in PREFIXES]),
    ("means", [{"centring": False}] + [{"centring": True, "mean_sentences": n, "missing_mean": m}
                                       for n in (100, 300, 700) for m in ("sprachbund", "global")]),
    ("language subspace", [{"subspace_rank": r, "subspace_rows": w} for r in (0, 8, 16, 32, 64) for w in ("all", "without own mean")
                           if not (r == 0 and w != "all")]),
    ("maps", [{"maps": "none"}] + [{"maps": "all"}]
     + [{"maps": "sprachbund", "shrink_group": g} for g in (0.0, 1.0, 4.0)]
     + [{"maps": "language", "shrink_group": g, "shrink_language": lam} for g in (1.0, 4.0) for lam in (1.0, 4.0, 16.0)]),
    ("scoring", [{"scoring": "cosine"}, {"scoring": "margin"}]),
]


# ------------------------------------------------------------------------------ fitting
@dataclass
class Stats:
    """Per (source, language) sums of the training rows at one layer/prefix, so that any fit is a sum."""

    foreign_sum: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # first-n-rows prefix sums
    foreign_rows: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    english_rows: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)


@dataclass
class Fitted:
    """Means, subspace and maps of one fit.

    Attributes:
        means: language -> the mean its texts subtract (own, else its sprachbund's or the global
            one); ``"*"``: the global mean (fallback texts).
        own: languages with a mean of their own.
        group_means: sprachbund -> mean of its languages' own means.
        subspace: ``[dim, rank]`` orthonormal directions of the language means (None: none removed).
        maps: language -> the map its vectors go through (none for English or without maps).
        group_maps / language_maps / all_map: the maps by level (``language_maps``: languages
            with a map of their own, shrunk to their group's).
    """

    means: dict[str, np.ndarray]
    own: set[str]
    subspace: np.ndarray | None
    maps: dict[str, np.ndarray]
    group_means: dict[str, np.ndarray] = field(default_factory=dict)
    group_maps: dict[str, np.ndarray] = field(default_factory=dict)
    language_maps: dict[str, np.ndarray] = field(default_factory=dict)
    all_map: np.ndarray | None = None
    _spaces: dict[tuple[Any, ...], VectorSpace] = field(default_factory=dict, repr=False, compare=False)

    def space(self, choice: Choice, sprachbund_of: Mapping[str, str], maps: bool = True) -> VectorSpace:
        """This fit as the runtime's :class:`~sprachbund_router.space.VectorSpace` (every map a
        language map, named by its level), so the protocol serves vectors with the router's own
        steps; ``maps=False``: centring and subspace removal only (the input of the map fit)."""
        key = (choice.centring, choice.missing_mean, choice.subspace_rank, choice.subspace_rows, maps)
        if key in self._spaces:
            return self._spaces[key]
        means: dict[str, np.ndarray] = {}
        if choice.centring:
            means = {f"lang:{lang}": self.means[lang] for lang in sorted(self.own)}
            means.update({f"sprachbund:{g}": m for g, m in self.group_means.items()})
            means["global"] = self.means["*"]
        named: dict[str, np.ndarray] = {}
        language_maps: dict[str, str] = {}
        for lang, w in (self.maps.items() if maps else ()):
            if lang == "en":
                continue
            if w is self.all_map:
                name = "all"
            else:
                name = next((f"group.{g}" for g, gw in self.group_maps.items() if gw is w), f"lang.{lang}")
            named[name], language_maps[lang] = w, name
        spec = SpaceSpec(path="protocol", centring=choice.centring, missing_mean=choice.missing_mean,  # type: ignore[arg-type]
                         fallback_mean="global", anchor="en", language_maps=language_maps,
                         subspace_rows=choice.subspace_rows if choice.subspace_rank and self.subspace is not None else "none")
        space = VectorSpace(spec, means, named, sprachbund_of, subspace=self.subspace if choice.subspace_rank else None)
        self._spaces[key] = space
        return space


def procrustes(target: np.ndarray) -> np.ndarray:
    """The orthogonal W maximising tr(Wᵀ target)."""
    u, _, vt = np.linalg.svd(target)
    return (u @ vt).astype(np.float32)


def random_partition(languages: Sequence[str], sizes: Sequence[int], seed: int = 0) -> dict[str, str]:
    """Language -> random group, groups of the given sizes (the paper's random baseline)."""
    langs = sorted(languages)
    random.Random(seed).shuffle(langs)
    out, start = {}, 0
    for gi, size in enumerate(sizes):
        for lang in langs[start:start + size]:
            out[lang] = f"random{gi}"
        start += size
    for lang in langs[start:]:
        out[lang] = f"random{len(sizes) - 1}"
    return out


class Experiment:
    """Vectors, fits and scores of every candidate on every source (see the module docstring)."""

    def __init__(self, data: Data, vectors: Mapping[str, LayerVectors]) -> None:
        self.data = data
        self.vectors = vectors
        self._train_vecs: dict[tuple[int, str], dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]] = {}
        self._dev_cache: dict[tuple[Choice, str, str], dict[str, float]] = {}
        self._means: dict[tuple[Any, ...], dict[str, np.ndarray]] = {}
        sizes = {}
        for g in data.sprachbund_of.values():
            sizes[g] = sizes.get(g, 0) + 1
        self.random_of = random_partition(sorted(data.sprachbund_of), sorted(sizes.values(), reverse=True))

    # ---------------------------------------------------------------- training rows
    def train_vectors(self, layer: int, prefix: str) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
        """(source, language) -> (foreign, English) unit vectors of the train rows."""
        key = (layer, prefix)
        if key not in self._train_vecs:
            vec = self.vectors[prefix]
            self._train_vecs[key] = {
                (s, lang): (vec.get([x for x, _ in pairs], layer), vec.get([e for _, e in pairs], layer))
                for s, splits in self.data.rows.items() for lang, pairs in splits["train"].items()}
        return self._train_vecs[key]

    def own_means(self, layer: int, prefix: str, mean_texts: int, sources: Sequence[str]) -> dict[str, np.ndarray]:
        """Each language's own mean over the train halves of ``sources`` (memoised: candidates that
        differ only in their subspace, maps or scoring share it)."""
        key = (layer, prefix, mean_texts, tuple(sorted(sources)))
        if key in self._means:
            return dict(self._means[key])
        vec = self.vectors[prefix]
        per_lang: dict[str, list[list[str]]] = {}
        english: list[list[str]] = []
        for s in sources:  # only the texts a mean takes are looked up (a build encodes no more)
            for lang, pairs in self.data.rows[s]["train"].items():
                per_lang.setdefault(lang, []).append([x for x, _ in pairs])
                english.append([e for _, e in pairs])
        means: dict[str, np.ndarray] = {}
        for lang, parts in sorted(per_lang.items()):
            texts = _interleave(parts, mean_texts)
            if len(texts) >= MIN_MEAN_TEXTS:
                means[lang] = vec.get(texts, layer).mean(0)
        if english:
            means["en"] = vec.get(_interleave(english, mean_texts * 4), layer).mean(0)
        self._means[key] = means
        return dict(means)

    def fit(self, choice: Choice, sources: Sequence[str]) -> Fitted:
        """Means, subspace and maps from the train halves of ``sources``."""
        means = self.own_means(choice.layer, choice.prefix, choice.mean_sentences, sources)
        own = set(means)
        groups: dict[str, list[np.ndarray]] = {}
        for lang, m in means.items():
            groups.setdefault(self.data.sprachbund_of.get(lang, "?"), []).append(m)
        group_means = {g: np.mean(ms, axis=0) for g, ms in groups.items()}
        global_mean = np.mean([m for m in means.values()], axis=0) if means else None
        for lang, g in self.data.sprachbund_of.items():
            if lang not in means and global_mean is not None:
                means[lang] = group_means.get(g, global_mean) if choice.missing_mean == "sprachbund" else global_mean
        means["*"] = global_mean if global_mean is not None else np.zeros(1, np.float32)
        fitted = Fitted(means, own, None, {}, group_means)
        if choice.subspace_rank:
            mat = np.stack([means[lang] for lang in sorted(own)])
            mat = mat - mat.mean(0)
            _, _, vt = np.linalg.svd(mat, full_matrices=False)
            rank = min(choice.subspace_rank, len(own) - 1)  # beyond the means' rank a direction would be arbitrary
            fitted.subspace = vt[:rank].T.astype(np.float32)
        if choice.maps != "none":
            self._fit_maps(choice, sources, self.train_vectors(choice.layer, choice.prefix), fitted)
        return fitted

    def _fit_maps(self, choice: Choice, sources: Sequence[str], train: Mapping[tuple[str, str], tuple[np.ndarray, np.ndarray]],
                  fitted: Fitted) -> None:
        before_maps = fitted.space(choice, self.data.sprachbund_of, maps=False)
        cross: dict[str, np.ndarray] = {}
        rows: dict[str, int] = {}
        for (s, lang), (x, e) in train.items():
            if s not in sources or lang == "en":
                continue
            xc = before_maps.serve(x, [lang] * len(x), normalize=False)
            ec = before_maps.serve(e, ["en"] * len(e), normalize=False)
            cross[lang] = cross.get(lang, 0) + xc.T @ ec
            rows[lang] = rows.get(lang, 0) + len(x)
        if not cross:
            return
        w_all = procrustes(sum(cross.values()))
        fitted.all_map = w_all
        if choice.maps == "all":
            fitted.maps = {lang: w_all for lang in self.data.sprachbund_of if lang != "en"}
            return
        group_of = self.random_of if choice.maps in ("random", "language-random") else self.data.sprachbund_of
        group_cross: dict[str, np.ndarray] = {}
        group_rows: dict[str, int] = {}
        for lang, c in cross.items():
            g = group_of.get(lang, "?")
            group_cross[g] = group_cross.get(g, 0) + c
            group_rows[g] = group_rows.get(g, 0) + rows[lang]
        w_group = {g: procrustes(c + choice.shrink_group * group_rows[g] * w_all) for g, c in group_cross.items()}
        fitted.group_maps = w_group
        for lang in self.data.sprachbund_of:
            if lang == "en":
                continue
            prior = w_group.get(group_of.get(lang, "?"), w_all)
            if choice.maps in ("language", "language-random") and lang in cross:
                fitted.language_maps[lang] = procrustes(cross[lang] + choice.shrink_language * rows[lang] * prior)
            fitted.maps[lang] = fitted.language_maps.get(lang, prior)

    def serve(self, v: Any, lang: str, fitted: Fitted, choice: Choice) -> Any:
        """The candidate's vectors of unit vectors ``v`` (numpy or torch) of language ``lang``: the
        runtime's own steps (:meth:`Fitted.space`)."""
        return fitted.space(choice, self.data.sprachbund_of).serve(v, [lang] * len(v))

    # ---------------------------------------------------------------- scoring
    def score(self, choice: Choice, source: str, split: str, fitted: Fitted) -> dict[str, float]:
        """Language -> top-1 of its ``split`` rows of ``source`` among all of that split's English messages."""
        vec = self.vectors[choice.prefix]
        return top1_to_english(self.data.rows[source][split],
                               lambda texts, lang: self.serve(vec.get(texts, choice.layer), lang, fitted, choice),
                               choice.scoring)

    def dev_scores(self, choice: Choice, source: str) -> dict[str, float]:
        """Dev top-1 per language of ``source``, fitted on every other source's train half."""
        key = (choice, source, "dev")
        if key not in self._dev_cache:
            others = [s for s in self.data.sources if s != source]
            self._dev_cache[key] = self.score(choice, source, "dev", self.fit(choice, others))
        return self._dev_cache[key]


def hits_to_english(per_lang: Mapping[Any, Sequence[tuple[str, str]]], embed: Callable[[list[str], Any], np.ndarray],
                    scoring: str) -> dict[Any, np.ndarray]:
    """Language -> one bool per (text, English) row of ``per_lang``: is its English message ranked
    first among all the English messages of ``per_lang`` (normalised, each once), by ``scoring``
    (``cosine`` / ``margin``)? ``embed(texts, lang)`` gives unit vectors (English side: ``lang="en"``)."""
    english = sorted({normalise(e): e for pairs in per_lang.values() for _, e in pairs}.items())
    position = {k: i for i, (k, _) in enumerate(english)}
    cand = embed([e for _, e in english], "en")
    out = {}
    for lang, pairs in per_lang.items():
        q = embed([x for x, _ in pairs], lang)
        best = (top_k_margin(q, cand, 1) if scoring == "margin" else top_k_cosine(q, cand, 1))[0][:, 0]
        gold = np.array([position[normalise(e)] for _, e in pairs])
        out[lang] = best == gold
    return out


def top1_to_english(per_lang: Mapping[Any, Sequence[tuple[str, str]]], embed: Callable[[list[str], Any], np.ndarray],
                    scoring: str) -> dict[Any, float]:
    """Language -> top-1 of its (text, English) rows (:func:`hits_to_english`, averaged)."""
    return {lang: float(h.mean()) for lang, h in hits_to_english(per_lang, embed, scoring).items()}


def _interleave(parts: Sequence[Sequence[str]], n: int) -> list[str]:
    """Up to ``n`` items taken in turn from each part (every source contributes)."""
    out: list[str] = []
    longest = max((len(p) for p in parts), default=0)
    for i in range(longest):
        for p in parts:
            if i < len(p):
                out.append(p[i])
                if len(out) >= n:
                    return out
    return out


def macro(scores: Mapping[str, float]) -> float:
    return float(np.mean(list(scores.values()))) if scores else float("nan")


# ------------------------------------------------------------------------------ the protocol
def choose(exp: Experiment, held_out: str | None, start: Choice, stages: Sequence[tuple[str, list[dict[str, Any]]]] = STAGES,
           ) -> tuple[Choice, list[dict[str, Any]]]:
    """Stage by stage, the candidate with the best mean dev score over the interface sources other
    than ``held_out`` (None: all of them). Returns the choice and the trail of dev scores."""
    dev_sources = [s for s in exp.data.sources if s != held_out and exp.data.kinds[s] == "interface"]
    current = start
    trail = []
    for name, options in stages:
        table = []
        for change in options:
            cand = replace(current, **change)
            score = float(np.mean([macro(exp.dev_scores(cand, s)) for s in dev_sources]))
            table.append((score, cand))
        best_score, best = max(table, key=lambda t: t[0])
        logger.info("held out %s, stage %s: %s (dev %.2f)", held_out, name, best.label(), 100 * best_score)
        trail.append({"stage": name, "chosen": best.label(), "dev": round(100 * best_score, 2),
                      "candidates": {c.label(): round(100 * s, 2) for s, c in table}})
        current = best
    return current, trail


def run(exp: Experiment, stages: Sequence[tuple[str, list[dict[str, Any]]]] = STAGES) -> dict[str, Any]:
    """The whole protocol: per held-out source the chosen setting and its test scores, baselines
    beside it; and the setting chosen on every source."""
    sources = exp.data.sources
    card = plain(CARD["layer"], CARD["prefix"])
    start = Choice()
    results: dict[str, Any] = {"folds": {}, "plain_test": {}}
    plain_choices = [plain(la, p) for la in LAYERS for p in PREFIXES]
    empty = Fitted({"*": np.zeros(1)}, set(), None, {})  # plain choices subtract nothing
    for s in sources:  # plain configurations need no fit: their test scores once
        results["plain_test"][s] = {c.label(): exp.score(c, s, "test", empty) for c in plain_choices}
    for s in sources:
        logger.info("fold %s", s)
        chosen, trail = choose(exp, s, start, stages)
        fitted = exp.fit(chosen, [o for o in sources if o != s])
        test = exp.score(chosen, s, "test", fitted)
        best_plain, _ = choose(exp, s, card, [("plain layer and prefix", [{"layer": la, "prefix": p} for la in LAYERS for p in PREFIXES])])
        others = [o for o in sources if o != s]
        variants = {f"maps={m}": replace(chosen, maps=m) for m in COMPARED_MAPS}
        variants.update({"no space (chosen layer and prefix)": plain(chosen.layer, chosen.prefix),
                         "centring only": replace(chosen, subspace_rank=0, maps="none", scoring="cosine"),
                         "subspace removal only": replace(chosen, centring=False, subspace_rank=chosen.subspace_rank or 32,
                                                          subspace_rows="all", maps="none", scoring="cosine"),
                         "cosine scoring": replace(chosen, scoring="cosine"), "margin scoring": replace(chosen, scoring="margin")})
        compared = {name: exp.score(v, s, "test", exp.fit(v, others)) for name, v in variants.items()}
        results["folds"][s] = {
            "compared": compared,
            "kind": exp.data.kinds[s], "chosen": asdict(chosen), "label": chosen.label(), "trail": trail,
            "router": test, "card": results["plain_test"][s][card.label()],
            "best_plain_by_dev": {"label": best_plain.label(), "scores": results["plain_test"][s][best_plain.label()]},
        }
    shipped, trail = choose(exp, None, start, stages)
    results["shipped"] = {"chosen": asdict(shipped), "label": shipped.label(), "trail": trail}
    return results
