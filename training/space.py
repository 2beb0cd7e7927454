"""Fit the router's vector space: language means (centring) and per-sprachbund linear maps.

See :mod:`sprachbund_router.space` for what the runtime does with them. Everything here is
closed form on frozen encoder vectors, so it runs in minutes on a CPU:

* **means**: the mean unit vector of each language over its monolingual text, with every
  text of any dev, test or out-of-domain split left out; a sprachbund's mean is the mean of
  its languages' means, the global mean the mean of all;
* **maps** into the anchor language's (English) centred space, fitted on the training rows
  of the English-aligned pairs (the training split: English texts outside every dev and test split): orthogonal Procrustes
  or ridge least squares, per sprachbund, for all languages at once ("all"), or for random
  groups of the sprachbunds' sizes ("random", the paper's baseline). A sprachbund map may be
  shrunk towards the "all" map (``shrink``: the weight of ``||W - W_all||²``), which keeps
  small sprachbunds from over-fitting their few pairs.

Choices (map kind, shrinkage, whether a sprachbund's own map beats the shared one) are made
on the dev split, never on the test split.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sprachbund_router.config import invert_sprachbunds
from sprachbund_router.space import SpaceSpec, VectorSpace, unit
from training.corpus import read_mono, read_ood_pairs, read_pair_rows, read_pairs, read_udhr_paragraphs

logger = logging.getLogger(__name__)

MapKind = Literal["orthogonal", "ridge"]
#: A language's dev pairs count for choices only from this many rows on.
MIN_DEV_PAIRS = 30
MapScope = Literal["none", "all", "sprachbund", "auto"]
#: Extra training-pair sources for the maps: name -> what it is.
EXTRA_SOURCES = {"libreoffice": "LibreOffice interface strings (Debian libreoffice-l10n-*), training only"}
#: Texts whose raw vectors are stored with a space to recognise the encoder it was fitted on.
PROBE_TEXTS = [
    "The cat sleeps on the sofa.",
    "Die Katze schläft auf dem Sofa.",
    "猫在沙发上睡觉。",
    "Кошка спит на диване.",
    "बिल्ली सोफे पर सो रही है।",
]
PROBE_LANGUAGES = ["en", "de", "zh", "ru", "hi"]


@dataclass
class SpaceSettings:
    """How the space of a router's base encoder is fitted.

    Attributes:
        centring: subtract each language's mean vector.
        mean_source: ``"interface"`` (Firefox strings outside every test split), ``"udhr"``
            (UDHR paragraphs, the same content in every language) or ``"both"``.
        mean_sentences: texts per language for its mean (sampled with a fixed seed).
        min_mean_sentences: a language with fewer texts gets no mean of its own (it uses
            ``missing_mean``).
        missing_mean / fallback_mean: see :class:`sprachbund_router.space.SpaceSpec`.
        maps: ``"none"``, ``"all"`` (one map), ``"sprachbund"`` (one per sprachbund) or
            ``"auto"`` (per sprachbund, its own map only where it beats the "all" map on the
            dev split).
        map_kind: ``"orthogonal"`` (Procrustes) or ``"ridge"``.
        ridge: ridge strength (ridge maps), relative to the number of training rows.
        shrink: candidate shrinkage weights of a sprachbund map towards the "all" map,
            relative to its number of training rows; the dev split picks one.
        max_train_pairs: training rows per language (the corpus's training split).
        extra_pairs: more English-aligned training sources for the maps: ``"libreoffice"``
            (:mod:`training.libreoffice`, built when missing); the corpus's held-out texts never
            reach them.
        max_extra_pairs: rows per language and extra source (a fixed-seed sample).
        anchor: the language whose space every map lands in.
        seed: sampling seed.
        protocol: ``"corpus"`` (fitted on the corpus's splits, choices on its dev split) or
            ``"sources"`` (fitted by leave one source out's own code on the held-out sources'
            train halves: the default router).
        subspace_rank / subspace_rows: directions of the language means projected out (0: none)
            and on which rows (``"all"``, ``"without own mean"``).
        shrink_group / shrink_language: prior weights of a sprachbund map towards the all map and
            of a language map towards its sprachbund's (``protocol = "sources"``).
    """

    centring: bool = True
    mean_source: str = "interface"
    mean_sentences: int = 300
    min_mean_sentences: int = 30
    missing_mean: str = "sprachbund"
    fallback_mean: str = "global"
    maps: str = "auto"
    map_kind: str = "orthogonal"
    ridge: float = 0.1
    shrink: list[float] = field(default_factory=lambda: [0.0, 0.5, 2.0, 8.0])
    max_train_pairs: int = 400
    extra_pairs: list[str] = field(default_factory=list)
    max_extra_pairs: int = 2000
    anchor: str = "en"
    seed: int = 13
    protocol: str = "corpus"
    subspace_rank: int = 0
    subspace_rows: str = "all"
    shrink_group: float = 1.0
    shrink_language: float = 1.0

    def key_fields(self) -> dict[str, Any]:
        """The settings a fitted space depends on (the extra-pair fields only when extra
        sources are used, the held-out-source fields only with that protocol, so spaces fitted
        before they existed keep their key)."""
        out = dict(self.__dict__)
        if not self.extra_pairs:
            out.pop("extra_pairs")
            out.pop("max_extra_pairs")
        if self.protocol == "corpus":
            for key in ("protocol", "subspace_rank", "subspace_rows", "shrink_group", "shrink_language"):
                out.pop(key)
        return out

    def choice(self) -> Any:
        """The :class:`training.loso.Choice` of a ``protocol = "sources"`` space: the fields the
        two share, under the same names (layer, prefix and scoring are the encoder's and the
        router's own, not the space's)."""
        from dataclasses import fields

        from training.loso import Choice

        return Choice(**{f.name: getattr(self, f.name) for f in fields(Choice) if f.name in self.__dict__})

    def __post_init__(self) -> None:
        if self.mean_source not in ("interface", "udhr", "both"):
            raise ValueError(f"mean_source must be 'interface', 'udhr' or 'both', got {self.mean_source!r}")
        if self.maps not in ("none", "all", "sprachbund", "auto", "language"):
            raise ValueError(f"maps must be 'none', 'all', 'sprachbund', 'auto' or 'language', got {self.maps!r}")
        if self.map_kind not in ("orthogonal", "ridge"):
            raise ValueError(f"map_kind must be 'orthogonal' or 'ridge', got {self.map_kind!r}")
        if self.missing_mean not in ("sprachbund", "global", "none"):
            raise ValueError(f"missing_mean must be 'sprachbund', 'global' or 'none', got {self.missing_mean!r}")
        if self.fallback_mean not in ("global", "none"):
            raise ValueError(f"fallback_mean must be 'global' or 'none', got {self.fallback_mean!r}")
        check_extra_sources(self.extra_pairs)
        if self.protocol not in ("corpus", "sources"):
            raise ValueError(f"protocol must be 'corpus' (Firefox and extra pairs, dev-split choices) or 'sources' "
                             f"(every held-out source, choices by leave one source out), got {self.protocol!r}")
        if self.protocol == "sources":
            if self.maps not in ("none", "all", "sprachbund", "language"):
                raise ValueError(f"with protocol 'sources' maps must be 'none', 'all', 'sprachbund' or 'language', got {self.maps!r}")
            if self.map_kind != "orthogonal":
                raise ValueError("with protocol 'sources' maps are orthogonal (map_kind = 'orthogonal')")
        elif self.maps == "language" or self.subspace_rank:
            raise ValueError("per-language maps and subspace removal need protocol = 'sources'")
        if not isinstance(self.subspace_rank, int) or self.subspace_rank < 0:
            raise ValueError(f"subspace_rank must be an int >= 0, got {self.subspace_rank!r}")
        if self.subspace_rows not in ("all", "without own mean"):
            raise ValueError(f"subspace_rows must be 'all' or 'without own mean', got {self.subspace_rows!r}")
        if self.max_extra_pairs < 0:
            raise ValueError(f"max_extra_pairs must be >= 0, got {self.max_extra_pairs}")


def check_extra_sources(sources: Sequence[str], where: str = "") -> None:
    """Raise ValueError naming any of ``sources`` that is not an extra pair source."""
    unknown = sorted(set(sources) - set(EXTRA_SOURCES))
    if unknown:
        raise ValueError(f"{where}extra_pairs: unknown source(s) {unknown}; choose from {sorted(EXTRA_SOURCES)}")


# ------------------------------------------------------------------------------ cached vectors
class VectorCache:
    """Raw (normalised) encoder vectors keyed by text, kept on disk between runs.

    The cache file is keyed by the encoder's fingerprint (its vectors of :data:`PROBE_TEXTS`),
    so vectors of another encoder are never mixed in.
    """

    def __init__(self, encode: Callable[[list[str]], np.ndarray], path: Path | None = None) -> None:
        self._encode = encode
        probe = encode(PROBE_TEXTS)
        self.fingerprint = hashlib.sha256(np.round(probe, 4).tobytes()).hexdigest()[:16]
        self.path = path.with_name(f"{path.stem}-{self.fingerprint}.npz") if path else None
        self._rows: dict[str, int] = {}
        self._vecs: list[np.ndarray] = []
        if self.path and self.path.is_file():
            data = np.load(self.path, allow_pickle=False)
            self._rows = {k: i for i, k in enumerate(data["keys"].tolist())}
            self._vecs = [data["vectors"]]
        self._dirty = False

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of ``texts`` (encoding only the ones not seen before)."""
        todo = self.missing(texts)
        if todo:
            self.add(todo, self._encode(todo))
        keys = [self._key(t) for t in texts]
        table = np.concatenate(self._vecs) if len(self._vecs) > 1 else self._vecs[0]
        self._vecs = [table]
        dim = table.shape[1] if table.ndim == 2 else 0
        return table[[self._rows[k] for k in keys]] if keys else np.zeros((0, dim), np.float32)

    def missing(self, texts: Sequence[str]) -> list[str]:
        """The texts (deduplicated, in order) that are not cached yet."""
        return list(dict.fromkeys(t for t in texts if self._key(t) not in self._rows))

    def add(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Store vectors computed elsewhere (row i belongs to ``texts[i]``; known texts are skipped)."""
        new = [(t, i) for i, t in enumerate(texts) if self._key(t) not in self._rows]
        if not new:
            return
        offset = sum(len(v) for v in self._vecs)
        for j, (t, _) in enumerate(new):
            self._rows[self._key(t)] = offset + j
        self._vecs.append(np.asarray(vectors, dtype=np.float32)[[i for _, i in new]])
        self._dirty = True

    def add_keyed(self, keys: Sequence[str], vectors: np.ndarray) -> int:
        """Store vectors already keyed by :meth:`_key` (another cache's); returns how many were new."""
        new = [(k, i) for i, k in enumerate(keys) if k not in self._rows]
        if not new:
            return 0
        offset = sum(len(v) for v in self._vecs)
        for j, (k, _) in enumerate(new):
            self._rows[k] = offset + j
        self._vecs.append(np.asarray(vectors, dtype=np.float32)[[i for _, i in new]])
        self._dirty = True
        return len(new)

    def save(self) -> None:
        """Write the cache file (when anything new was encoded)."""
        if self.path and self._dirty and self._vecs:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            keys = sorted(self._rows, key=self._rows.get)  # type: ignore[arg-type]
            tmp = self.path.with_suffix(".tmp.npz")
            np.savez(tmp, keys=np.array(keys), vectors=self._vecs[0])
            tmp.replace(self.path)
            self._dirty = False


# ------------------------------------------------------------------------------ data
def held_out_texts(corpus: Path, languages: Sequence[str]) -> set[str]:
    """Every text (either side) of the dev and test splits and of the out-of-domain sets (VLC
    strings; LibreOffice help paragraphs when built).

    Means and maps never see these.
    """
    from training.libreoffice import read_help_set

    out: set[str] = set()
    for lang in languages:
        rows = [r for r in read_pair_rows(corpus, lang) if r[3] != "train"]
        out.update(r[1] for r in rows)
        out.update(r[2] for r in rows)
        for xx, en in [*read_ood_pairs(corpus, lang), *read_help_set(corpus, lang)]:
            out.update((xx, en))
    return {t.strip().casefold() for t in out}


def mean_texts(corpus: Path, lang: str, source: str, n: int, banned: set[str], seed: int = 13) -> list[str]:
    """Up to ``n`` texts of ``lang`` for its mean, none of them in ``banned`` (held-out texts)."""
    texts: list[str] = []
    if source in ("interface", "both"):
        udhr = set(read_udhr_paragraphs(corpus, lang))
        texts += [t for t in read_mono(corpus, lang) if t not in udhr]
    if source in ("udhr", "both"):
        texts += read_udhr_paragraphs(corpus, lang)
    texts = [t for t in dict.fromkeys(texts) if t.strip() and t.strip().casefold() not in banned]
    random.Random(f"{seed}-{lang}").shuffle(texts)  # one order: a smaller sample is a prefix of a larger one
    return texts[:n]


def ensure_extra_pairs(corpus: Path, sources: Sequence[str], languages: Sequence[str]) -> None:
    """Build the files of the extra pair ``sources`` for ``languages`` where they are missing."""
    unknown = sorted(set(sources) - set(EXTRA_SOURCES))
    if unknown:
        raise ValueError(f"unknown extra pair source(s) {unknown}; choose from {sorted(EXTRA_SOURCES)}")
    if "libreoffice" in sources:
        from training.libreoffice import ensure_pairs

        ensure_pairs(corpus, languages)


def ensure_space_data(corpus: Path, groups: Mapping[str, Sequence[str]], settings: SpaceSettings) -> None:
    """The data stage of a space fit: fetch and build what ``settings`` reads (the held-out sources,
    or the extra pair sources), so that fitting itself never fetches a package."""
    languages = sorted({m for g in groups.values() for m in g})
    if settings.protocol == "sources":
        from training.held_out_sources import ensure_sources

        ensure_sources(corpus, languages)
    elif settings.maps != "none":
        ensure_extra_pairs(corpus, settings.extra_pairs, [lang for lang in languages if lang != settings.anchor])


def _check_extra_pairs_built(corpus: Path, sources: Sequence[str]) -> None:
    unknown = sorted(set(sources) - set(EXTRA_SOURCES))
    if unknown:
        raise ValueError(f"unknown extra pair source(s) {unknown}; choose from {sorted(EXTRA_SOURCES)}")
    for source in sources:
        if not (corpus / "extra" / source / "counts.json").is_file():
            raise ValueError(f"the extra pairs {source!r} are not built in {corpus}: run the data stage first "
                             "(training.space.ensure_space_data)")


def train_pairs(corpus: Path, lang: str, n: int, extra: Sequence[str] = (), n_extra: int = 0,
                banned: set[str] | None = None, seed: int = 13) -> dict[str, list[tuple[str, str]]]:
    """(text, English) training rows per source: ``firefox`` (the corpus's training split, at
    most ``n``) and each of ``extra`` (at most ``n_extra``, a fixed-seed sample).

    Extra rows whose text or English is in ``banned`` (held-out texts, casefolded) are dropped
    here too, whatever their source file says, as are rows repeating a Firefox training row.
    """
    out = {"firefox": read_pairs(corpus, lang, "train")[:n]}
    seen = {(x, e) for x, e in out["firefox"]}
    for source in extra:
        if source == "libreoffice":
            from training.libreoffice import read_pairs_file

            rows = [(x, e) for _, x, e in read_pairs_file(corpus, lang)]
        else:
            raise ValueError(f"unknown extra pair source {source!r}; choose from {sorted(EXTRA_SOURCES)}")
        random.Random(f"{seed}-{source}-{lang}").shuffle(rows)
        kept = []
        for x, e in rows:
            if len(kept) >= n_extra:
                break
            if (x, e) in seen or (banned and (x.strip().casefold() in banned or e.strip().casefold() in banned)):
                continue
            seen.add((x, e))
            kept.append((x, e))
        out[source] = kept
    return out


# ------------------------------------------------------------------------------ fitting
def language_means(
    embed: Callable[[list[str]], np.ndarray], texts: Mapping[str, Sequence[str]], groups: Mapping[str, Sequence[str]],
    min_sentences: int,
) -> dict[str, np.ndarray]:
    """``lang:xx`` / ``sprachbund:name`` / ``global`` -> mean unit vector."""
    from tqdm.auto import tqdm

    means: dict[str, np.ndarray] = {}
    for lang, ts in tqdm(texts.items(), desc="language means", unit="lang"):
        if len(ts) >= min_sentences:
            means[f"lang:{lang}"] = unit(embed(list(ts))).mean(0)
    for group, members in groups.items():
        own = [means[f"lang:{m}"] for m in members if f"lang:{m}" in means]
        if own:
            means[f"sprachbund:{group}"] = np.mean(own, axis=0)
    lang_means = [v for k, v in means.items() if k.startswith("lang:")]
    if lang_means:
        means["global"] = np.mean(lang_means, axis=0)
    return {k: v.astype(np.float32) for k, v in means.items()}


def fit_map(x: np.ndarray, y: np.ndarray, kind: MapKind = "orthogonal", ridge: float = 0.1,
            prior: np.ndarray | None = None, shrink: float = 0.0) -> np.ndarray:
    """A ``[dim, dim]`` map ``W`` with ``x @ W ≈ y``.

    ``orthogonal``: maximise ``tr(Wᵀ(xᵀy + λ·prior))`` over orthogonal W (Procrustes; with a
    prior this is ``min ||xW - y||² + λ||W - prior||²`` on the orthogonal group).
    ``ridge``: ``(xᵀx + (ridge+λ)·n·I)⁻¹ (xᵀy + λ·n·prior)``. ``λ = shrink · n`` (n rows).
    """
    n, dim = x.shape
    lam = shrink * n
    target = x.T @ y
    if prior is not None and lam:
        target = target + lam * prior
    if kind == "orthogonal":
        u, _, vt = np.linalg.svd(target)
        return (u @ vt).astype(np.float32)
    reg = (ridge * n + (lam if prior is not None else 0.0)) * np.eye(dim)
    return np.linalg.solve(x.T @ x + reg, target).astype(np.float32)


def top1_both(a: np.ndarray, b: np.ndarray) -> float:
    """Mean top-1 of a->b and b->a (rows aligned), on unit vectors."""
    a, b = unit(a), unit(b)
    sim = a @ b.T
    gold = np.arange(len(a))
    return float(((sim.argmax(1) == gold).mean() + (sim.argmax(0) == gold).mean()) / 2)


@dataclass
class FittedSpace:
    """Means and maps with the choices made on the dev split."""

    means: dict[str, np.ndarray]
    maps: dict[str, np.ndarray]
    sprachbund_maps: dict[str, str | None]
    report: dict[str, Any]
    subspace: np.ndarray | None = None
    language_maps: dict[str, str] = field(default_factory=dict)

    def spec_fields(self, settings: SpaceSettings) -> dict[str, Any]:
        """The :class:`~sprachbund_router.space.SpaceSpec` fields this fit decides."""
        rows = settings.subspace_rows if self.subspace is not None else "none"
        return {"sprachbund_maps": dict(self.sprachbund_maps), "language_maps": dict(self.language_maps), "subspace_rows": rows}


def recorded_loso(artifacts: Path | None = None) -> dict[str, Any]:
    """The leave-one-source-out figures recorded with the shipped space (package data; empty when
    none): what a refit reports beside its own fit. The build never reads the checkout's benchmarks."""
    import json

    path = (artifacts or SHIPPED_DIR) / "default-space.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    loso = meta.get("report", {}).get("loso", {}) if isinstance(meta, dict) else {}
    return loso if isinstance(loso, dict) else {}


def fit_space_from_sources(
    embed: Callable[[list[str]], np.ndarray], corpus: Path, groups: Mapping[str, Sequence[str]], settings: SpaceSettings,
) -> FittedSpace:
    """Fit the space on the train halves of every held-out source (:mod:`training.held_out_sources`)
    with the code that scored the choice (:meth:`training.loso.Experiment.fit`), so what ships is
    what was measured. ``embed`` gives the served encoder's unit vectors (its layer and prefix)."""
    from training.held_out_sources import load_manifest
    from training.loso import CAPS, Data, Experiment

    manifest = load_manifest(corpus)
    if not manifest:
        raise ValueError(f"protocol 'sources' needs the held-out sources in {corpus} (python -m training.held_out_sources)")
    sources = sorted(manifest["sources"])
    languages = sorted({m for g in groups.values() for m in g} | {settings.anchor})
    data = Data.load(corpus, sources, languages, invert_sprachbunds(groups), CAPS,
                     {s: info.get("kind", "interface") for s, info in manifest["sources"].items()})

    class Served:
        def get(self, texts: Sequence[str], layer: int) -> np.ndarray:
            return unit(embed(list(texts))) if texts else np.zeros((0, 0), np.float32)

    choice = settings.choice()
    exp = Experiment(data, {choice.prefix: Served()})  # type: ignore[dict-item]
    fitted = exp.fit(choice, sources)
    means = {f"lang:{lang}": fitted.means[lang] for lang in sorted(fitted.own)}
    means.update({f"sprachbund:{g}": m for g, m in fitted.group_means.items() if g in groups})
    means["global"] = fitted.means["*"]
    maps: dict[str, np.ndarray] = {}
    chosen: dict[str, str | None] = dict.fromkeys(groups)
    language_maps: dict[str, str] = {}
    if settings.maps == "all" and fitted.all_map is not None:
        maps["all"], chosen = fitted.all_map, dict.fromkeys(groups, "all")
    elif settings.maps in ("sprachbund", "language"):
        for g in groups:
            if g in fitted.group_maps:
                maps[g], chosen[g] = fitted.group_maps[g], g
        for lang, w in fitted.language_maps.items():
            maps[f"lang.{lang}"], language_maps[lang] = w, f"lang.{lang}"
    report = {"settings": settings.__dict__.copy(), "protocol": "sources", "sources": sources, "loso": recorded_loso(),
              "train_rows": {s: sum(len(p) for p in data.rows[s]["train"].values()) for s in sources},
              "languages_without_own_mean": sorted(set(languages) - fitted.own)}
    return FittedSpace({k: v.astype(np.float32) for k, v in means.items()}, maps, chosen, report, fitted.subspace, language_maps)


def fit_space(
    embed: Callable[[list[str]], np.ndarray],
    corpus: Path,
    groups: Mapping[str, Sequence[str]],
    settings: SpaceSettings,
) -> FittedSpace:
    """Fit means and maps for a router whose sprachbunds are ``groups``.

    ``embed`` gives the base encoder's unit vectors (use a :class:`VectorCache`).
    """
    from tqdm.auto import tqdm

    languages = sorted({m for g in groups.values() for m in g} | {settings.anchor})
    banned = held_out_texts(corpus, languages)
    if settings.maps != "none":
        _check_extra_pairs_built(corpus, settings.extra_pairs)
    texts = {lang: mean_texts(corpus, lang, settings.mean_source, settings.mean_sentences, banned, settings.seed)
             for lang in tqdm(languages, desc="mean texts", unit="lang")}
    means = language_means(embed, texts, groups, settings.min_mean_sentences) if settings.centring else {}
    where = invert_sprachbunds(groups)
    # the map fit's input: the runtime's own steps up to the map (centring only: this route removes no subspace)
    centring = VectorSpace(SpaceSpec(path="fit", centring=settings.centring and bool(means), missing_mean=settings.missing_mean,
                                     fallback_mean="global" if "global" in means else "none", anchor=settings.anchor),
                           means, {}, where)

    def centred(vecs: np.ndarray, lang: str) -> np.ndarray:
        return centring.serve(vecs, [lang] * len(vecs), normalize=False)

    report: dict[str, Any] = {"settings": settings.__dict__.copy(), "mean_texts": {k: len(v) for k, v in texts.items()},
                              "languages_without_own_mean": sorted(lang for lang in languages if f"lang:{lang}" not in means)}
    if settings.maps == "none":
        return FittedSpace(means, {}, dict.fromkeys(groups), report)

    sources: dict[str, dict[str, int]] = {}

    def pairs_of(lang: str, split: str) -> tuple[np.ndarray, np.ndarray]:
        if split == "train":
            per_source = train_pairs(corpus, lang, settings.max_train_pairs, settings.extra_pairs, settings.max_extra_pairs,
                                     banned, settings.seed)
            sources[lang] = {k: len(v) for k, v in per_source.items()}
            rows = [r for v in per_source.values() for r in v]
        else:
            rows = read_pairs(corpus, lang, "dev")
        if not rows:
            return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
        xx, en = embed([r[0] for r in rows]), embed([r[1] for r in rows])
        return centred(xx, lang), centred(en, settings.anchor)

    mapped = [lang for lang in languages if lang != settings.anchor]
    train = {lang: pairs_of(lang, "train") for lang in tqdm(mapped, desc="map training pairs", unit="lang")}
    train = {lang: xy for lang, xy in train.items() if len(xy[0])}
    dev = {lang: pairs_of(lang, "dev") for lang in mapped}
    dev = {lang: xy for lang, xy in dev.items() if len(xy[0]) >= MIN_DEV_PAIRS}
    report["train_pairs"] = {lang: len(xy[0]) for lang, xy in train.items()}
    report["train_pairs_by_source"] = sources

    maps, chosen = _fit_maps(train, dev, groups, mapped, settings, report)
    return FittedSpace(means, maps, chosen, report)


def _fit_maps(train: Mapping[str, tuple[np.ndarray, np.ndarray]], dev: Mapping[str, tuple[np.ndarray, np.ndarray]],
              groups: Mapping[str, Sequence[str]], mapped: Sequence[str], settings: SpaceSettings,
              report: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, str | None]]:
    """The maps of the corpus route: one for all languages, then per sprachbund (``settings.maps``)
    the own map shrunk towards it with the shrink chosen on the dev pairs, or (``auto``) whichever
    of none / all / own scores best on dev. Writes the dev scores into ``report["dev"]``."""
    maps: dict[str, np.ndarray] = {}
    chosen: dict[str, str | None] = dict.fromkeys(groups)

    def stack(langs: Sequence[str]) -> tuple[np.ndarray, np.ndarray] | None:
        parts = [train[lang] for lang in langs if lang in train]
        if not parts:
            return None
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def dev_score(langs: Sequence[str], w: np.ndarray | None) -> float | None:
        scores = [top1_both(dev[lang][0] @ w if w is not None else dev[lang][0], dev[lang][1]) for lang in langs if lang in dev]
        return float(np.mean(scores)) if scores else None

    all_xy = stack(mapped)
    if all_xy is None:
        logger.warning("no training pairs: the space has no maps")
        return maps, chosen
    w_all = fit_map(*all_xy, kind=settings.map_kind, ridge=settings.ridge)  # type: ignore[arg-type]
    if settings.maps == "all":
        report["dev"] = {g: {"all": dev_score(ms, w_all), "none": dev_score(ms, None)} for g, ms in groups.items()}
        return {"all": w_all}, dict.fromkeys(groups, "all")
    report["dev"] = {}
    use_all = False
    for group, members in groups.items():
        xy = stack(members)
        scores: dict[str, float | None] = {"none": dev_score(members, None), "all": dev_score(members, w_all)}
        best_w, best_name = None, None
        if xy is not None and scores["none"] is None:  # no dev pairs to choose with: the first candidate
            best_w = fit_map(*xy, kind=settings.map_kind, ridge=settings.ridge, prior=w_all, shrink=settings.shrink[0])  # type: ignore[arg-type]
            best_name = f"own(shrink={settings.shrink[0]:g})"
        elif xy is not None:
            for lam in settings.shrink:
                w = fit_map(*xy, kind=settings.map_kind, ridge=settings.ridge, prior=w_all, shrink=lam)  # type: ignore[arg-type]
                s = dev_score(members, w)
                scores[f"own(shrink={lam:g})"] = s
                if s is not None and (best_w is None or s > (scores[best_name] or -1)):  # type: ignore[index]
                    best_w, best_name = w, f"own(shrink={lam:g})"
        if settings.maps == "sprachbund" and best_w is not None:
            maps[group], chosen[group] = best_w, group
        elif settings.maps == "auto":
            cands = {k: v for k, v in scores.items() if v is not None}
            pick = max(cands, key=lambda k: (cands[k], k == "none")) if cands else "none"
            if pick.startswith("own") and best_w is not None:
                maps[group], chosen[group] = best_w, group
            elif pick == "all":
                chosen[group], use_all = "all", True
        report["dev"][group] = {"scores": scores, "chosen": chosen[group], "best_own": best_name}
    if use_all:
        maps["all"] = w_all
    return maps, chosen


# ------------------------------------------------------------------------------ the build stage
#: Spaces shipped with the package (``python -m benchmarks.ship_artifacts space DIR``), so
#: that ``sbr setup`` needs no fitting when base, corpus, sprachbunds and settings match.
SHIPPED_DIR = Path(__file__).resolve().parent / "artifacts"
SPACE_FILE = "spaces/base.safetensors"


def space_key(settings: SpaceSettings, groups: Mapping[str, Sequence[str]], corpus: Path) -> str:
    """What a fitted space depends on besides the encoder (checked on its probe vectors):
    settings, sprachbunds and the corpus format.

    Package versions are left out on purpose: splits are a hash of each English text, so a
    space fitted on older strings never saw a test text of newer ones, and a Firefox update
    does not force a refit at set-up.
    """
    import json

    from training.corpus import load_manifest

    manifest = load_manifest(corpus)
    parts: list[Any] = [settings.key_fields(), {g: sorted(m) for g, m in groups.items()}, manifest["settings"]]
    if settings.protocol == "sources":
        from training.held_out_sources import SOURCES_VERSION

        parts.append({"sources_version": SOURCES_VERSION})
    blob = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_space(
    encoder: Any, corpus: Path, groups: Mapping[str, Sequence[str]], settings: SpaceSettings, out: Path, work: Path,
    shipped_name: str = "default-space",
) -> tuple[Any, dict[str, Any]]:
    """Fit (or take the shipped copy of) the space of ``encoder`` and write it into router ``out``.

    Returns the :class:`~sprachbund_router.space.SpaceSpec` for the router config and the
    fitting report (dev-split choices, counts).
    """
    import json
    import shutil

    from sprachbund_router.paths import cache_root
    from sprachbund_router.space import SpaceSpec, VectorSpace

    probe = encoder.encode(PROBE_TEXTS)
    key = space_key(settings, groups, corpus)
    shipped = SHIPPED_DIR / f"{shipped_name}.safetensors"
    spec_args = {"path": SPACE_FILE, "centring": settings.centring, "missing_mean": settings.missing_mean,
                 "fallback_mean": settings.fallback_mean, "anchor": settings.anchor}
    where = invert_sprachbunds(groups)
    meta = shipped_space(key, encoder, where, spec_args, SHIPPED_DIR, shipped_name)
    if meta is not None:
        (out / SPACE_FILE).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shipped, out / SPACE_FILE)
        logger.info("vector space: the shipped %s matches (key %s); no fitting needed", shipped.name, key)
        report = {**meta["report"], "source": f"shipped with the package ({shipped.name})", "key": key}
        return SpaceSpec(**spec_args, **_shipped_fields(meta), provenance=_provenance(report)), report
    ensure_space_data(corpus, groups, settings)  # the data stage of a refit: only when the shipped space does not fit
    cache = VectorCache(lambda texts: encoder.encode(texts, batch_size=64), cache_root() / "vectors" / "base.npz")
    try:
        fitted = (fit_space_from_sources if settings.protocol == "sources" else fit_space)(cache, corpus, groups, settings)
    finally:
        cache.save()
    spec = SpaceSpec(**spec_args, **fitted.spec_fields(settings))
    VectorSpace(spec, fitted.means, fitted.maps, where, PROBE_TEXTS, probe, fitted.subspace).save(out)
    report = {**fitted.report, "source": "fitted in this build", "key": key}
    spec.provenance = _provenance(report)
    (work / "space_report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    return spec, report


def shipped_space(key: str, encoder: Any, where: Mapping[str, str], spec_args: Mapping[str, Any],
                  artifacts: Path = SHIPPED_DIR, name: str = "default-space") -> dict[str, Any] | None:
    """The shipped space's record when it may be taken, else None (the build fits its own).

    Taken only when: it was fitted for ``key``; the file's sha256 is the recorded one (a changed
    map or mean is refused); ``encoder`` reproduces the fitting encoder's probe vectors; and the
    space serves the recorded reference vectors from this encoder's own (cosine >= the probe bound).
    """
    from sprachbund_router.backend import PROBE_MIN_COSINE
    from sprachbund_router.errors import CheckpointError
    from sprachbund_router.space import SpaceSpec, VectorSpace
    from training.files import shipped_record

    meta = shipped_record(artifacts, name, key, "vector space")
    if meta is None:
        return None
    shipped = artifacts / f"{name}.safetensors"
    try:  # the same base encoder: its vectors of the probe texts match the stored ones
        space = VectorSpace.load(artifacts, SpaceSpec(**{**spec_args, "path": shipped.name}, **_shipped_fields(meta)), where)
        space.check_encoder(encoder, "torch", "base")
        ref = meta["reference"]
        served = space.serve(encoder.encode(ref["texts"]), ref["languages"])
        want = unit(np.asarray(ref["served_vectors"], dtype=np.float32))
        cos = float((served * want).sum(1).min())
        if not cos >= PROBE_MIN_COSINE["torch"]:
            raise CheckpointError(f"it serves the reference texts at cosine {cos:.4f} to the recorded vectors")
    except (CheckpointError, KeyError, TypeError, ValueError) as err:
        logger.info("vector space: the shipped %s does not fit this encoder (%s)", shipped.name, err)
        return None
    return meta


def _shipped_fields(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The spec fields a shipped space's JSON records (older files: sprachbund maps only)."""
    return {"sprachbund_maps": meta["sprachbund_maps"], "language_maps": meta.get("language_maps", {}),
            "subspace_rows": meta.get("subspace_rows", "none")}


def _provenance(report: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a fitting report kept in the router config."""
    return {k: report[k] for k in ("settings", "source", "key", "languages_without_own_mean", "dev", "protocol", "sources",
                                   "loso") if k in report}


def ship_space(router_dir: Path, shipped_name: str = "default-space", loso: Mapping[str, Any] | None = None) -> Path:
    """Copy a built router's space (with its key and report) into the package's artifacts;
    ``loso``: the protocol's figures to record with it (``benchmarks.loso.loso_summary``)."""
    import json
    import shutil

    from sprachbund_router.config import RouterConfig

    cfg = RouterConfig.load(router_dir)
    spec = cfg.spaces["base"]
    report_file = router_dir / "work" / "space_report.json"
    work_report = cfg.provenance.get("settings", {}).get("work_dir")
    if work_report == "@cache":
        from sprachbund_router.paths import cache_root

        report_file = cache_root() / "build" / cfg.provenance["build"] / "space_report.json"
    report = json.loads(report_file.read_text()) if report_file.is_file() else dict(spec.provenance)
    if report.get("protocol") == "sources" and loso is not None:
        report["loso"] = dict(loso)  # the figures as measured, whatever the build saw
    from sprachbund_router.paths import data_dir

    settings = SpaceSettings(**report["settings"])
    key = space_key(settings, cfg.sprachbunds, data_dir() / "corpus")
    report["key"] = key
    SHIPPED_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(router_dir / spec.path, SHIPPED_DIR / f"{shipped_name}.safetensors")
    from sprachbund_router.router import SprachbundRouter

    served = SprachbundRouter.from_pretrained(router_dir, backend="torch").encode(PROBE_TEXTS, lang=PROBE_LANGUAGES)
    from training.files import file_sha256

    meta = {"key": key, "sha256": file_sha256(SHIPPED_DIR / f"{shipped_name}.safetensors"),
            "sprachbund_maps": spec.sprachbund_maps, "language_maps": spec.language_maps,
            "subspace_rows": spec.subspace_rows, "report": report,
            "reference": {"texts": PROBE_TEXTS, "languages": PROBE_LANGUAGES,
                          "served_vectors": np.round(served, 6).tolist()}}
    (SHIPPED_DIR / f"{shipped_name}.json").write_text(json.dumps(meta, indent=1, default=str) + "\n")
    return SHIPPED_DIR / f"{shipped_name}.safetensors"
