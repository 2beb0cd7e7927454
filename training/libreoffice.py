"""More English-aligned training pairs: LibreOffice's interface strings (Debian ``libreoffice-l10n-*``).

Firefox gives about 700 training rows per language and none for some. LibreOffice's gettext
catalogues (``usr/lib/libreoffice/program/resource/<locale>/LC_MESSAGES/*.mo``, about 90 Debian
packages, 51 MB) hold up to ~28k messages per language whose msgid *is* the English string
(behind a ``KEY\\x04`` context). This module turns them into training pairs that can never leak
into an evaluation:

- a pair is dropped when its normalised English (casefolded, punctuation and spaces collapsed)
  or its normalised translation equals one of a **dev, test or out-of-domain** text of the corpus
  (Firefox dev/test rows, VLC rows), so near-identical strings across programs stay out;
- strings left in English (:func:`training.routing.left_in_english`) and duplicates (by
  normalised English) are dropped;
- everything is training data; counts per language (kept and dropped, by reason) are reported.

It writes ``<corpus>/extra/libreoffice/<lang>-en.tsv`` (``key <TAB> text <TAB> English``) and
``counts.json``; the build does not read them yet (next: the space's maps, the adapters and the
n-gram identifier's training text).

    python -m training.libreoffice [--languages de,fr,...] [--corpus DIR] [--measure-identifier N]
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Iterable, Sequence
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


def build_pairs(corpus_dir: Path, catalogues: dict[str, list[Path]], out_dir: Path) -> dict[str, Any]:
    """Write the training pairs of each language from its catalogues; returns the counts."""
    from training.corpus import write_rows
    from training.routing import english_vocabulary, left_in_english

    held_english, held_own = held_out_texts(corpus_dir, sorted(catalogues))
    vocabulary = english_vocabulary(corpus_dir)
    counts: dict[str, Any] = {}
    out_dir.mkdir(parents=True, exist_ok=True)
    for lang, files in sorted(catalogues.items()):
        why: Counter[str] = Counter()
        seen: set[str] = set()
        rows = []
        for path in sorted(files):
            for key, en, xx in read_catalogue(path):
                norm_en = normalise(en)
                if norm_en in held_english or normalise(xx) in held_own.get(lang, set()):
                    why["held-out text"] += 1
                elif left_in_english(xx, en, vocabulary):
                    why["left in English"] += 1
                elif norm_en in seen:
                    why["duplicate"] += 1
                else:
                    seen.add(norm_en)
                    rows.append((key, xx, en))
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


def read_pairs_file(corpus_dir: Path, lang: str) -> list[tuple[str, str, str]]:
    """(key, text, English) rows written by :func:`build_pairs` (empty when none)."""
    path = Path(corpus_dir) / "extra" / "libreoffice" / f"{lang}-en.tsv"
    if not path.is_file():
        return []
    return [tuple(r) for r in (line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()) if len(r) == 3]  # type: ignore[misc]


def measure_identifier(corpus_dir: Path, router_dir: Path, per_language: int = 3000, max_features: int = 100_000,
                       work: Path | None = None) -> dict[str, Any]:
    """The n-gram identifier trained as the build does, with and without ``per_language`` LibreOffice
    strings per language added to its training text: language accuracy per length bucket (dev and
    test) and 1-2-word routing at the threshold the calibration rule picks on dev."""
    import random
    import tempfile

    from sprachbund_router.config import RouterConfig
    from sprachbund_router.language_id import NgramIdentifier
    from training.identifier import train_ngram, training_texts
    from training.routing import THRESHOLDS, WRONG_PERCENTILE, rates, routing_set

    groups = RouterConfig.load(router_dir).sprachbunds
    where = {lang: g for g, members in groups.items() for lang in members}
    langs = sorted(where)
    dev, test = routing_set(corpus_dir, langs, "dev"), routing_set(corpus_dir, langs, "test", 50)
    plain = training_texts(corpus_dir, langs)
    extended = {}
    for lang in langs:
        rows = read_pairs_file(corpus_dir, lang)
        random.Random(0).shuffle(rows)
        extended[lang] = plain.get(lang, []) + [text for _, text, _ in rows[:per_language]]

    results = {}
    root = Path(work or tempfile.mkdtemp(prefix="sbr-lo-"))
    for name, texts in (("firefox + udhr", plain), (f"+ {per_language} LibreOffice strings", extended)):
        report = train_ngram(corpus_dir, langs, root / name.replace(" ", "_"), max_features=max_features, texts=texts)
        ident = NgramIdentifier(langs, root / name.replace(" ", "_"))
        d, t = rates(ident, dev, where, THRESHOLDS)["buckets"], rates(ident, test, where, THRESHOLDS)["buckets"]
        i = next((j for j, r in enumerate(d["1-2 words"]["curve"]) if r["wrong_q90"] <= 3.0), None)
        results[name] = {
            "features": report["features"], "scaling": report["scaling"],
            "language_accuracy": {"dev": {b: v["language_accuracy"] for b, v in d.items()},
                                  "test": {b: v["language_accuracy"] for b, v in t.items()}},
            "short_routing": None if i is None else {"threshold": THRESHOLDS[i], "dev": d["1-2 words"]["curve"][i],
                                                     "test": t["1-2 words"]["curve"][i]},
        }
    return {"per_language": per_language, "max_features": max_features, "results": results,
            "rule": f"1-2 words: lowest threshold with wrong routes <= 3% at the {WRONG_PERCENTILE}th bootstrap percentile on dev"}


def main() -> None:
    """Command line: fetch, align, write the pairs and their counts."""
    from sprachbund_router.paths import data_dir, default_router_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--languages", default=None, help="Comma-separated (default: the default router's).")
    parser.add_argument("--corpus", type=Path, default=None)
    parser.add_argument("--measure-identifier", type=int, default=None, metavar="N",
                        help="Also train the n-gram identifier with N LibreOffice strings per language and compare.")
    parser.add_argument("--max-features", type=int, default=100_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    corpus = args.corpus or data_dir() / "corpus"
    if args.languages:
        languages = args.languages.split(",")
    else:
        from sprachbund_router.config import RouterConfig

        languages = sorted(RouterConfig.load(default_router_dir()).languages)
    started = time.perf_counter()
    catalogues, sources = fetch_catalogues(languages, data_dir() / "downloads")
    counts = build_pairs(corpus, catalogues, corpus / "extra" / "libreoffice")
    report = {"languages": counts, "sources": sources, "seconds": round(time.perf_counter() - started, 1),
              "total_pairs": sum(c["pairs"] for c in counts.values()),
              "rule": "train only; dropped when the normalised English or translation equals a dev, test or "
                      "out-of-domain text, when left in English, or duplicated"}
    (corpus / "extra" / "libreoffice" / "counts.json").write_text(json.dumps(report, indent=1) + "\n")
    for lang, c in counts.items():
        logger.info("%s: %d pairs (%d sentence-like), dropped %s", lang, c["pairs"], c["sentence_like"], c["dropped"])
    logger.info("%d pairs in %d languages in %.0f s", report["total_pairs"], len(counts), report["seconds"])
    if args.measure_identifier:
        measured = measure_identifier(corpus, default_router_dir(), args.measure_identifier, args.max_features)
        out = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "libreoffice_identifier.json"
        out.write_text(json.dumps({**measured, "pairs": {k: v["pairs"] for k, v in counts.items()}}, indent=1) + "\n")
        for name, r in measured["results"].items():
            logger.info("%s: 1-2-word language accuracy %s (test); short routing %s", name,
                        r["language_accuracy"]["test"].get("1-2 words"), r["short_routing"] and r["short_routing"]["test"])


if __name__ == "__main__":
    main()
