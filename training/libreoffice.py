"""More English-aligned training pairs: LibreOffice's interface strings (Debian ``libreoffice-l10n-*``).

Firefox gives about 700 training rows per language and none for some. LibreOffice's gettext
catalogues (``usr/lib/libreoffice/program/resource/<locale>/LC_MESSAGES/*.mo``, about 90 Debian
packages, 51 MB) hold up to ~28k messages per language whose msgid *is* the English string
(behind a ``KEY\\x04`` context). This module turns them into training pairs that can never leak
into an evaluation:

- a pair is dropped when its normalised English (casefolded, punctuation and spaces collapsed)
  or its normalised translation equals one of a **dev, test or out-of-domain** text of the corpus
  (Firefox dev/test rows, VLC rows), so near-identical strings across programs stay out;
- strings left in English (:func:`training.calibration.left_in_english`) and duplicates (by
  normalised English) are dropped;
- everything is training data; counts per language (kept and dropped, by reason) are reported.

It writes ``<corpus>/extra/libreoffice/<lang>-en.tsv`` (``key <TAB> text <TAB> English``) and
``counts.json``. The build reads them where a config asks for them (``extra_pairs = ["libreoffice"]``
in ``[space]`` for the maps, in ``[adapters]`` for the distillation pairs) and builds them then if
they are missing (:func:`ensure_pairs`).

    python -m training.libreoffice [--languages de,fr,...] [--corpus DIR] [--help-set N]

``--help-set N`` also builds an **out-of-domain test set** from the help pages
(``libreoffice-help-*``, 29 router languages): up to N paragraphs per language, aligned on the
paragraph ids every language's copy of a page shares, none equal to any training or test text.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from training.sources import SourceError, extract_deb, fetch_debian, list_debian, read_mo_entries

logger = logging.getLogger(__name__)

PREFIX = "libreoffice-l10n-"
#: Package suffixes that are not the router code of their language (or not a language).
LOCALE_CODES = {"pt-br": None, "pa-in": "pa", "zh-cn": "zh", "zh-tw": None, "kmr": "ku", "en-gb": None, "en-za": None,
                "in": None, "nn": None}
_NORM = re.compile(r"[\W_]+")


def normalise(text: str) -> str:
    """Casefolded letters and digits joined by single spaces (punctuation and spacing ignored)."""
    return _NORM.sub(" ", text.casefold()).strip()


def read_catalogue(path: Path) -> list[tuple[str, str, str]]:
    """(key, English, translation) of one ``.mo`` file, the key being ``<file>:<msgctxt>``
    (:func:`training.sources.read_mo_entries`)."""
    return [(f"{path.stem}:{context}", en, xx) for context, en, xx in read_mo_entries(path)]


def package_languages(names: Iterable[str]) -> dict[str, str]:
    """Router code -> package name (``libreoffice-l10n-pt`` -> ``pt``; variants and meta packages dropped)."""
    out = {}
    for name in names:
        suffix = name[len(PREFIX):]
        code = LOCALE_CODES.get(suffix, suffix)
        if code and "-" not in code:
            out[code] = name
    return out


def held_out_texts(corpus_dir: Path, languages: Sequence[str]) -> tuple[set[str], dict[str, set[str]]]:
    """Normalised English texts of every dev, test and out-of-domain row, and per language the
    normalised texts of that language's held-out rows (nothing resembling them may be trained on)."""
    from training.corpus import read_ood_pairs, read_pair_rows

    english: set[str] = set()
    own: dict[str, set[str]] = {}
    for lang in languages:
        mine: set[str] = set()
        for _, text, en, split in read_pair_rows(corpus_dir, lang):
            if split != "train":
                english.add(normalise(en))
                mine.add(normalise(text))
        for text, en in read_ood_pairs(corpus_dir, lang):
            english.add(normalise(en))
            mine.add(normalise(text))
        own[lang] = mine
    return english, own


def filter_pairs(rows: Iterable[tuple[str, str, str]], checks: Sequence[tuple[str, Callable[[str, str], bool]]],
                 ) -> tuple[list[tuple[str, str, str]], Counter[str]]:
    """The (key, text, English) rows that pass every check, in order, deduplicated by normalised
    English (the first kept); and how many were dropped, by the name of the first check a row
    failed (or ``"duplicate"``). A check is ``(name, dropped(text, English))``."""
    why: Counter[str] = Counter()
    seen: set[str] = set()
    kept = []
    for key, xx, en in rows:
        failed = next((name for name, dropped in checks if dropped(xx, en)), None)
        norm_en = normalise(en) if failed is None else ""
        if failed is None and norm_en in seen:
            failed = "duplicate"
        if failed is not None:
            why[failed] += 1
            continue
        seen.add(norm_en)
        kept.append((key, xx, en))
    return kept, why


def build_pairs(corpus_dir: Path, catalogues: dict[str, list[Path]], out_dir: Path) -> dict[str, Any]:
    """Write the training pairs of each language from its catalogues; returns the counts."""
    from training.calibration import english_vocabulary, left_in_english
    from training.corpus import write_rows

    held_english, held_own = held_out_texts(corpus_dir, sorted(catalogues))
    vocabulary = english_vocabulary(corpus_dir)
    counts: dict[str, Any] = {}
    out_dir.mkdir(parents=True, exist_ok=True)
    for lang, files in sorted(catalogues.items()):
        own = held_own.get(lang, set())
        rows, why = filter_pairs(
            ((key, xx, en) for path in sorted(files) for key, en, xx in read_catalogue(path)),
            [("held-out text", lambda xx, en, own=own: normalise(en) in held_english or normalise(xx) in own),
             ("left in English", lambda xx, en: left_in_english(xx, en, vocabulary))])
        write_rows(out_dir / f"{lang}-en.tsv", rows)
        counts[lang] = {"pairs": len(rows), "sentence_like": sum(len(en.split()) >= 5 for _, _, en in rows),
                        "dropped": dict(why)}
    return counts


def fetch_catalogues(languages: Sequence[str], cache_dir: Path) -> tuple[dict[str, list[Path]], list[dict[str, str]]]:
    """Download and unpack the packages of ``languages`` (cached); their ``.mo`` files per language."""
    available = package_languages(list_debian(PREFIX))
    wanted = {lang: available[lang] for lang in languages if lang in available}
    missing = sorted(set(languages) - set(wanted))
    if missing:
        logger.info("no LibreOffice package for %d languages: %s", len(missing), missing)
    fetched = fetch_debian(sorted(wanted.values()), cache_dir / "debian")
    by_name = {p.name: p for p in fetched}
    catalogues, sources = {}, []
    for lang, name in wanted.items():
        if name not in by_name:
            raise SourceError(f"{name} was not downloaded")
        root = extract_deb(by_name[name].path, cache_dir / "debian-x" / name)
        catalogues[lang] = sorted((root / "usr" / "lib" / "libreoffice" / "program" / "resource").glob("*/LC_MESSAGES/*.mo"))
        sources.append({"package": name, "version": by_name[name].version, "registry": "debian", "licence": "MPL-2.0"})
    return catalogues, sources


def build(corpus_dir: Path, languages: Sequence[str], downloads: Path) -> dict[str, Any]:
    """Fetch the catalogues of ``languages``, write their pairs and ``counts.json``; the report."""
    started = time.perf_counter()
    catalogues, sources = fetch_catalogues(languages, downloads)
    out_dir = Path(corpus_dir) / "extra" / "libreoffice"
    counts = build_pairs(Path(corpus_dir), catalogues, out_dir)
    report = {"languages": counts, "requested": sorted(languages), "sources": sources,
              "seconds": round(time.perf_counter() - started, 1), "total_pairs": sum(c["pairs"] for c in counts.values()),
              "rule": "train only; dropped when the normalised English or translation equals a dev, test or "
                      "out-of-domain text, when left in English, or duplicated"}
    (out_dir / "counts.json").write_text(json.dumps(report, indent=1) + "\n")
    logger.info("LibreOffice: %d pairs in %d languages in %.0f s", report["total_pairs"], len(counts), report["seconds"])
    return report


def ensure_pairs(corpus_dir: Path, languages: Sequence[str], downloads: Path | None = None) -> dict[str, Any]:
    """The pairs of ``languages``, built (about a minute) unless ``counts.json`` already covers them."""
    counts = Path(corpus_dir) / "extra" / "libreoffice" / "counts.json"
    before: set[str] = set()
    if counts.is_file():
        report = json.loads(counts.read_text())
        before = set(report.get("requested", report.get("languages", {})))
        if not set(languages) - before:
            return report
    if downloads is None:
        from sprachbund_router.paths import data_dir

        downloads = data_dir() / "downloads"
    return build(corpus_dir, sorted(before | set(languages)), downloads)  # counts.json keeps covering the earlier ones


def read_pairs_file(corpus_dir: Path, lang: str, source: str = "libreoffice") -> list[tuple[str, str, str]]:
    """(key, text, English) rows written by :func:`build_pairs` (or :func:`build_help_set` for
    ``source="libreoffice-help"``); empty when none."""
    path = Path(corpus_dir) / "extra" / source / f"{lang}-en.tsv"
    if not path.is_file():
        return []
    return [tuple(r) for r in (line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()) if len(r) == 3]


HELP_PREFIX = "libreoffice-help-"
HELP_ENGLISH = "libreoffice-help-en-us"
#: Paragraphs and headings of the help pages carry ids shared by every language's copy.
_HELP_PARAGRAPH = re.compile(r'<(p|h[1-6]|td)\b[^>]*\bid="((?:par|hd)_id\w+)"[^>]*>(.*?)</\1>', re.S)
_TAG = re.compile(r"<[^>]+>")
_BREAK = re.compile(r"<br\s*/?>|</(?:p|div|li|td|h[1-6])>", re.I)


def read_help_page(path: Path) -> dict[str, str]:
    """Paragraph id -> plain text of one help page (tags removed, entities decoded; first copy of an id)."""
    import html

    out: dict[str, str] = {}
    for _, pid, body in _HELP_PARAGRAPH.findall(path.read_text(encoding="utf-8", errors="replace")):
        text = " ".join(html.unescape(_TAG.sub("", _BREAK.sub(" ", body))).split())
        if text and pid not in out:
            out[pid] = text
    return out


def help_pairs(english_root: Path, root: Path) -> list[tuple[str, str, str]]:
    """(``page#id``, text, English) of every paragraph id two help trees share, in page order."""
    rows = []
    for page in sorted(english_root.rglob("*.html")):
        rel = page.relative_to(english_root)
        other = root / rel
        if not other.is_file():
            continue
        en, xx = read_help_page(page), read_help_page(other)
        rows += [(f"{rel.as_posix()}#{pid}", xx[pid], text) for pid, text in en.items() if pid in xx]
    return rows


def build_help_set(corpus_dir: Path, languages: Sequence[str], downloads: Path, per_language: int = 500,
                   min_words: int = 5, max_chars: int = 400) -> dict[str, Any]:
    """An out-of-domain test set of help paragraphs (Debian ``libreoffice-help-*``), aligned on the
    paragraph ids the pages share: ``<corpus>/extra/libreoffice-help/<lang>-en.tsv`` and ``counts.json``.

    Help pages are prose about the program, not interface strings. No paragraph of them is ever
    trained on, and a paragraph is dropped when its normalised English or translation equals any
    text of the corpus (every Firefox split, VLC) or of the LibreOffice training pairs, when it was
    left in English, has under ``min_words`` English words or over ``max_chars`` characters, or
    repeats (by normalised English). ``per_language`` paragraphs are kept per language, a fixed-seed
    sample over the whole help.
    """
    import random

    from training.calibration import english_vocabulary, left_in_english
    from training.corpus import read_ood_pairs, read_pair_rows, write_rows

    started = time.perf_counter()
    available = {n[len(HELP_PREFIX):]: n for n in list_debian(HELP_PREFIX)}
    codes = {lang: LOCALE_CODES.get(lang, lang) for lang in available}
    wanted = {code: available[suffix] for suffix, code in codes.items() if code in set(languages) and code != "en"}
    fetched = {p.name: p for p in fetch_debian(sorted({*wanted.values(), HELP_ENGLISH}), downloads / "debian")}
    if HELP_ENGLISH not in fetched:
        raise SourceError(f"{HELP_ENGLISH} was not downloaded")

    def help_root(name: str) -> Path | None:
        """The package's own help folder (``ca``, not ``ca-valencia``); None when it is a link to
        another language's (Debian's Slovak help is a link to the Czech one)."""
        root = extract_deb(fetched[name].path, downloads / "debian-x" / name) / "usr" / "share" / "libreoffice" / "help"
        suffix = name[len(HELP_PREFIX):]
        dirs = [d for d in root.iterdir() if d.name.lower() == suffix]
        if len(dirs) != 1:
            raise SourceError(f"{name}: no help folder {suffix!r} under {root} ({sorted(d.name for d in root.iterdir())})")
        if dirs[0].is_symlink() or not dirs[0].is_dir():
            logger.info("%s: its help folder is a link (%s -> %s), not a translation; skipped", name, dirs[0].name,
                        dirs[0].readlink() if dirs[0].is_symlink() else "?")
            return None
        return dirs[0]

    english_root = help_root(HELP_ENGLISH)
    if english_root is None:
        raise SourceError(f"{HELP_ENGLISH} has no English help folder")
    vocabulary = english_vocabulary(corpus_dir)
    out_dir = Path(corpus_dir) / "extra" / "libreoffice-help"
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, Any] = {}
    for lang, name in sorted(wanted.items()):
        if name not in fetched:
            raise SourceError(f"{name} was not downloaded")
        seen_texts: set[str] = set()
        for _, text, en, _ in read_pair_rows(corpus_dir, lang):
            seen_texts.update((normalise(text), normalise(en)))
        for text, en in read_ood_pairs(corpus_dir, lang):
            seen_texts.update((normalise(text), normalise(en)))
        for _, text, en in read_pairs_file(corpus_dir, lang):
            seen_texts.update((normalise(text), normalise(en)))
        own_root = help_root(name)
        if own_root is None:
            counts[lang] = {"pairs": 0, "available": 0, "dropped": {}, "package": name, "version": fetched[name].version,
                            "skipped": "the package's help folder is a link to another language's"}
            continue
        kept, why = filter_pairs(help_pairs(english_root, own_root), [
            ("length", lambda xx, en: len(en.split()) < min_words or len(en) > max_chars or len(xx) > 2 * max_chars),
            ("text of the corpus or of training pairs",
             lambda xx, en, seen=seen_texts: normalise(en) in seen or normalise(xx) in seen),
            ("left in English", lambda xx, en: left_in_english(xx, en, vocabulary))])
        random.Random(f"help-{lang}").shuffle(kept)
        write_rows(out_dir / f"{lang}-en.tsv", kept[:per_language])
        counts[lang] = {"pairs": min(len(kept), per_language), "available": len(kept), "dropped": dict(why),
                        "package": name, "version": fetched[name].version}
    report = {"languages": counts, "english": {"package": HELP_ENGLISH, "version": fetched[HELP_ENGLISH].version},
              "licence": "MPL-2.0", "seconds": round(time.perf_counter() - started, 1),
              "rule": "test only: help paragraphs aligned on paragraph ids; dropped when equal to any corpus text or "
                      "training pair (normalised), left in English, short, long or repeated"}
    (out_dir / "counts.json").write_text(json.dumps(report, indent=1) + "\n")
    logger.info("LibreOffice help: %d paragraphs in %d languages in %.0f s", sum(c["pairs"] for c in counts.values()),
                len(counts), report["seconds"])
    return report


def read_help_set(corpus_dir: Path, lang: str) -> list[tuple[str, str]]:
    """(text, English) help paragraphs of ``lang`` (the out-of-domain set of :func:`build_help_set`; empty if none)."""
    return [(x, e) for _, x, e in read_pairs_file(corpus_dir, lang, "libreoffice-help")]


def main() -> None:
    """Command line: fetch, align, write the pairs and their counts."""
    from sprachbund_router.paths import data_dir, default_router_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--languages", default=None, help="Comma-separated (default: the default router's).")
    parser.add_argument("--corpus", type=Path, default=None)
    parser.add_argument("--rebuild", action="store_true", help="Rebuild the pairs even when counts.json covers the languages.")
    parser.add_argument("--help-set", type=int, default=None, metavar="N",
                        help="Also build the out-of-domain set of N help paragraphs per language (libreoffice-help-*).")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    corpus = args.corpus or data_dir() / "corpus"
    if args.languages:
        languages = args.languages.split(",")
    else:
        from sprachbund_router.config import RouterConfig

        languages = sorted(RouterConfig.load(default_router_dir()).languages)
    report = build(corpus, languages, data_dir() / "downloads") if args.rebuild else ensure_pairs(corpus, languages)
    for lang, c in report["languages"].items():
        logger.info("%s: %d pairs (%d sentence-like), dropped %s", lang, c["pairs"], c["sentence_like"], c["dropped"])
    if args.help_set:
        build_help_set(corpus, languages, data_dir() / "downloads", per_language=args.help_set)


if __name__ == "__main__":
    main()
