"""Translated text by source, split into train / dev / test halves, for choices that must carry over
to text from other programs (leave one source out, :mod:`training.loso`).

Every source is one project's own translations, aligned to English:

* **interface** sources: gettext catalogues of desktop programs from Debian (GIMP, Nautilus,
  Evince, gedit, Pidgin, Audacity, Thunar, Gnumeric, GNOME Calculator, HexChat, Geany), plus the
  three the project already used: Firefox (the corpus's own splits), LibreOffice
  (``libreoffice-l10n-*``) and VLC (``vlc-l10n``);
* **prose** sources: the LibreOffice help paragraphs and the Debian Installation Guide
  (``installation-guide-amd64``: DocBook pages whose translations keep every paragraph, aligned
  by page and position where a page has as many paragraphs as the English one).

Kept out on purpose: the gettext catalogues installed on a fresh machine in its system locale
directory and their projects (GNU tools, glib/gtk/gdk-pixbuf, apt/dpkg, iso-codes,
xkeyboard-config, PackageKit, systemd, PostgreSQL...): they are reserved for independent checks
(:data:`RESERVED_DOMAINS` is refused).

Cleaning is LibreOffice's (:func:`training.libreoffice.filter_pairs`): accelerators, printf
placeholders and markup removed, strings left in English and repeats (by normalised English)
dropped. Splits are by message: a hash of the normalised English decides train / dev / test, the
same for every source and language, so one English message is in one split everywhere. Then no
text of any test half (either side, normalised) is left in any train or dev half, and no dev text in
any train half, across all sources (:func:`decontaminate`). Dev and test rows need at least
:data:`MIN_EVAL_WORDS` English words (a one-word label has many right answers) and are capped per
language (:data:`EVAL_CAP`).

    python -m training.held_out_sources [--sources gimp,nautilus,...]

writes ``<corpus>/sources/<source>/<lang>-en.tsv`` (``key, text, English, split``) and
``<corpus>/sources/manifest.json`` (packages, versions, licences, counts, rules).
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import random
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from training.libreoffice import filter_pairs, normalise
from training.sources import SourceError, extract_deb, fetch_debian, read_mo_entries

logger = logging.getLogger(__name__)

SourceKind = Literal["interface", "prose"]
SOURCES_DIR = "sources"
MANIFEST = "manifest.json"
#: Bump when the rows change (cleaning, splits, caps), so stale files are rebuilt.
SOURCES_VERSION = 1
#: Share of normalised English messages (by hash) in each split; the rest is train.
SPLIT_SHARES = (("test", 0.30), ("dev", 0.20))
SPLIT_SEED = "held-out-sources-1"
#: Dev and test rows need this many English words.
MIN_EVAL_WORDS = 3
#: Dev / test rows kept per language and source (a fixed-seed sample), train rows per language and source.
EVAL_CAP = {"dev": 60, "test": 100}
TRAIN_CAP = 100
#: Prose paragraphs: words and characters.
PROSE_MIN_WORDS, PROSE_MAX_CHARS = 5, 400
#: gettext domains of the system locale directory of a fresh machine (and their projects): never read.
RESERVED_DOMAINS = frozenset({
    "apt", "libapt-pkg6.0", "dpkg", "dpkg-dev", "glib20", "gtk20", "gtk20-properties", "gtk30", "gtk30-properties", "gtk40",
    "gdk-pixbuf", "at-spi2-core", "gsettings-desktop-schemas", "iso_639", "iso_639-2", "iso_639-3", "iso_639_3", "iso_639-5",
    "iso_639_5", "iso_3166", "iso_3166-1", "iso_3166-2", "iso_3166_2", "iso_3166-3", "iso_4217", "iso_15924",
    "xkeyboard-config", "PackageKit", "systemd", "coreutils", "grep", "sed", "tar", "findutils", "diffutils", "bash",
    "gettext-runtime", "gettext-tools", "wget", "make", "libc", "shadow", "Linux-PAM", "shared-mime-info",
})


@dataclass(frozen=True)
class SourceSpec:
    """One project's translations.

    Attributes:
        name: source name (``gimp``).
        kind: ``"interface"`` (program messages) or ``"prose"`` (documentation paragraphs).
        packages: Debian packages holding them.
        domains: gettext domains (``.mo`` file stems, a trailing ``*`` matches a prefix).
        description: what the project is.
    """

    name: str
    kind: SourceKind
    packages: tuple[str, ...]
    domains: tuple[str, ...] = ()
    description: str = ""


#: The sources fetched from Debian by this module.
DEBIAN_SOURCES: dict[str, SourceSpec] = {s.name: s for s in [
    SourceSpec("gimp", "interface", ("gimp-data",), ("gimp20*",), "GIMP 2.10 image editor"),
    SourceSpec("nautilus", "interface", ("nautilus-data",), ("nautilus",), "GNOME Files"),
    SourceSpec("evince", "interface", ("evince-common",), ("evince",), "GNOME document viewer"),
    SourceSpec("gedit", "interface", ("gedit-common",), ("gedit",), "GNOME text editor"),
    SourceSpec("pidgin", "interface", ("pidgin-data",), ("pidgin",), "Pidgin instant messenger"),
    SourceSpec("audacity", "interface", ("audacity-data",), ("audacity",), "Audacity audio editor"),
    SourceSpec("thunar", "interface", ("thunar-data",), ("thunar",), "Xfce file manager"),
    SourceSpec("gnumeric", "interface", ("gnumeric-common",), ("gnumeric*",), "Gnumeric spreadsheet"),
    SourceSpec("gnome-calculator", "interface", ("gnome-calculator",), ("gnome-calculator",), "GNOME Calculator"),
    SourceSpec("hexchat", "interface", ("hexchat-common",), ("hexchat",), "HexChat IRC client"),
    SourceSpec("geany", "interface", ("geany-common",), ("geany",), "Geany editor"),
    SourceSpec("installation-guide", "prose", ("installation-guide-amd64",), (), "Debian Installation Guide (DocBook)"),
]}
#: Sources the corpus already has (re-split here): name -> kind.
CORPUS_SOURCES: dict[str, SourceKind] = {"firefox": "interface", "libreoffice": "interface", "vlc": "interface",
                                          "libreoffice-help": "prose"}


def source_kinds() -> dict[str, SourceKind]:
    """Every source name -> its kind."""
    return {**CORPUS_SOURCES, **{n: s.kind for n, s in DEBIAN_SOURCES.items()}}


def split_of_message(english: str) -> str:
    """``train``, ``dev`` or ``test`` from a hash of the normalised English (the same for every
    source and language)."""
    from training.corpus import hashed_split

    return hashed_split(f"{SPLIT_SEED}:{normalise(english)}", SPLIT_SHARES)


def locale_code(locale: str) -> str | None:
    """Router code of a gettext locale directory (``pt_BR`` -> ``pt``), None for English, script or
    regional variants that are not the language's main one (``sr@latin``, ``ca@valencia``, ``zh_TW``)."""
    from training.corpus import PREFERRED_LOCALES
    from training.languages import normalize_code

    if "@" in locale:
        return None
    code = normalize_code(locale)
    if code == "en":
        return None
    region = locale.replace("_", "-")
    preferred = PREFERRED_LOCALES.get(code)
    if "-" in region and region != preferred and code in ("pt", "zh"):
        return None  # pt_PT / zh_TW / zh_HK: the corpus's variant is pt-BR / zh-CN
    return code


def catalogues_by_language(root: Path, domains: Sequence[str]) -> dict[str, list[Path]]:
    """Router code -> the ``.mo`` files of ``domains`` under ``root`` (a bare locale beats a regional one)."""
    def wanted(stem: str) -> bool:
        return stem not in RESERVED_DOMAINS and any(stem == d or (d.endswith("*") and stem.startswith(d[:-1])) for d in domains)

    by_locale: dict[str, list[Path]] = defaultdict(list)
    for mo in sorted(root.rglob("LC_MESSAGES/*.mo")):
        if wanted(mo.stem):
            by_locale[mo.parent.parent.name].append(mo)
    out: dict[str, tuple[str, list[Path]]] = {}
    for locale, files in sorted(by_locale.items()):
        code = locale_code(locale)
        if code is None:
            continue
        if code not in out or ("_" in out[code][0] and "_" not in locale):
            out[code] = (locale, files)
    return {code: files for code, (_, files) in out.items()}


def package_licence(root: Path, package: str) -> str:
    """The ``License:`` of the ``Files: *`` stanza of a package's Debian copyright file ("unknown" if none)."""
    path = root / "usr" / "share" / "doc" / package / "copyright"
    if not path.is_file():
        return "unknown"
    text = path.read_text(encoding="utf-8", errors="replace")
    stanza = re.search(r"^Files:\s*\*\s*$(.*?)(?:^\s*$|\Z)", text, re.M | re.S)
    found = re.search(r"^License:[ \t]*(\S.*)$", stanza.group(1) if stanza else text, re.M)
    if found and re.match(r"[\w.+-]+(\s+(or|and|with)\s+[\w.+ -]+)?$", found.group(1).strip()):
        return found.group(1).strip()
    named = sorted(set(re.findall(r"/usr/share/common-licenses/([A-Za-z0-9.+-]*[A-Za-z0-9+])", text)))
    if named:
        return ", ".join(named) + " (named in the copyright text)"
    return "see " + str(path.relative_to(root))


# ------------------------------------------------------------------------------ prose: the Installation Guide
_PARA = re.compile(r"<p>(.*?)</p>", re.S | re.I)
_TAG = re.compile(r"<[^>]+>")


def guide_paragraphs(page: Path) -> list[str]:
    """Plain text of every ``<p>`` of a DocBook HTML page, in order (empty ones kept, so positions align)."""
    raw = page.read_text(encoding="utf-8", errors="replace")
    return [" ".join(html.unescape(_TAG.sub(" ", body)).split()) for body in _PARA.findall(raw)]


def guide_pairs(english_root: Path, root: Path) -> list[tuple[str, str, str]]:
    """(``page#n``, text, English) of the paragraphs of pages with as many paragraphs as the English page."""
    rows = []
    for page in sorted(english_root.glob("*.html")):
        other = root / page.name
        if not other.is_file():
            continue
        en, xx = guide_paragraphs(page), guide_paragraphs(other)
        if len(en) != len(xx):
            continue
        rows += [(f"{page.name}#{i}", x, e) for i, (e, x) in enumerate(zip(en, xx)) if e and x]
    return rows


# ------------------------------------------------------------------------------ building
def fetch_source(spec: SourceSpec, languages: Sequence[str], downloads: Path,
                 ) -> tuple[dict[str, list[tuple[str, str, str]]], list[dict[str, str]]]:
    """(key, text, English) rows per language of one Debian source, and its packages' versions and licences."""
    fetched = {p.name: p for p in fetch_debian(list(spec.packages), downloads / "debian")}
    packages, rows = [], {}
    for name in spec.packages:
        if name not in fetched:
            raise SourceError(f"{name} was not downloaded")
        root = extract_deb(fetched[name].path, downloads / "debian-x" / name)
        packages.append({"package": name, "version": fetched[name].version, "registry": "debian",
                         "licence": package_licence(root, name)})
        if spec.kind == "prose":
            base = root / "usr" / "share" / "doc" / name
            english = base / "en"
            for folder in sorted(p for p in base.iterdir() if p.is_dir() and p.name != "en"):
                code = locale_code(folder.name)
                if code in languages:
                    rows[code] = guide_pairs(english, folder)
            continue
        for code, files in catalogues_by_language(root, spec.domains).items():
            if code in languages:
                rows.setdefault(code, []).extend(
                    (f"{mo.stem}:{ctx}", xx, en) for mo in files for ctx, en, xx in read_mo_entries(mo, libreoffice=False))
    return rows, packages


def corpus_source_rows(corpus: Path, name: str, lang: str) -> list[tuple[str, str, str]]:
    """(key, text, English) rows of a source the corpus already holds."""
    from training.corpus import read_ood_pairs, read_pair_rows
    from training.libreoffice import read_pairs_file

    if name == "firefox":
        return [(k, x, e) for k, x, e, _ in read_pair_rows(corpus, lang)]
    if name == "vlc":
        return [(f"vlc:{i}", x, e) for i, (x, e) in enumerate(read_ood_pairs(corpus, lang))]
    return read_pairs_file(corpus, lang, name)


def assign_splits(rows: Iterable[tuple[str, str, str]], kind: SourceKind, seed: str,
                  firefox_split: Mapping[str, str] | None = None) -> dict[str, list[tuple[str, str, str]]]:
    """Split rows by message (:func:`split_of_message`, or the corpus's own split for Firefox keys in
    ``firefox_split``); dev and test rows need :data:`MIN_EVAL_WORDS` English words (prose:
    :data:`PROSE_MIN_WORDS` and at most :data:`PROSE_MAX_CHARS`), others of those splits are dropped."""
    out: dict[str, list[tuple[str, str, str]]] = {"train": [], "dev": [], "test": []}
    for key, xx, en in rows:
        split = firefox_split.get(key, "train") if firefox_split is not None else split_of_message(en)
        if kind == "prose":
            if len(en.split()) < PROSE_MIN_WORDS or len(en) > PROSE_MAX_CHARS or len(xx) > 2 * PROSE_MAX_CHARS:
                continue
        elif split != "train" and len(en.split()) < MIN_EVAL_WORDS:
            continue
        out[split].append((key, xx, en))
    for split, cap in (*EVAL_CAP.items(), ("train", TRAIN_CAP)):
        random.Random(f"{seed}-{split}").shuffle(out[split])
        del out[split][cap:]
    return out


def decontaminate(split_rows: dict[str, dict[str, dict[str, list[tuple[str, str, str]]]]]) -> dict[str, int]:
    """Drop, in place, every train or dev row that shares a normalised text with a test row of any
    source (English side: any language; translation: the same language), and every train row that
    shares one with a dev row. ``split_rows``: source -> language -> split -> rows. Returns the
    number of rows dropped per split."""
    english: dict[str, set[str]] = {"test": set(), "dev": set()}
    own: dict[str, dict[str, set[str]]] = {"test": defaultdict(set), "dev": defaultdict(set)}
    for per_lang in split_rows.values():
        for lang, splits in per_lang.items():
            for held in ("test", "dev"):
                for _, xx, en in splits.get(held, []):
                    english[held].add(normalise(en))
                    own[held][lang].add(normalise(xx))
    dropped: Counter[str] = Counter()
    for per_lang in split_rows.values():
        for lang, splits in per_lang.items():
            for split, against in (("dev", ("test",)), ("train", ("test", "dev"))):
                keep = []
                for row in splits.get(split, []):
                    _, xx, en = row
                    if any(normalise(en) in english[h] or normalise(xx) in own[h][lang] for h in against):
                        dropped[split] += 1
                    else:
                        keep.append(row)
                splits[split] = keep
    return dict(dropped)


def build_sources(corpus: Path, languages: Sequence[str], downloads: Path, names: Sequence[str] | None = None) -> dict[str, Any]:
    """Fetch, clean, split and write every source; returns the manifest."""
    from training.calibration import english_vocabulary, left_in_english
    from training.corpus import read_pair_rows, write_rows
    from training.libreoffice import build_help_set, ensure_pairs

    started = time.perf_counter()
    names = list(names) if names else sorted(source_kinds())
    unknown = sorted(set(names) - set(source_kinds()))
    if unknown:
        raise ValueError(f"unknown source(s) {unknown}; choose from {sorted(source_kinds())}")
    languages = [lang for lang in languages if lang != "en"]
    if "libreoffice" in names:
        ensure_pairs(corpus, languages, downloads)
    if "libreoffice-help" in names and not (corpus / "extra" / "libreoffice-help" / "counts.json").is_file():
        build_help_set(corpus, languages, downloads)
    vocabulary = english_vocabulary(corpus)
    raw: dict[str, dict[str, list[tuple[str, str, str]]]] = {}
    manifest_sources: dict[str, Any] = {}
    for name in names:
        if name in DEBIAN_SOURCES:
            spec = DEBIAN_SOURCES[name]
            raw[name], packages = fetch_source(spec, languages, downloads)
            manifest_sources[name] = {"kind": spec.kind, "description": spec.description, "packages": packages}
        else:
            raw[name] = {lang: corpus_source_rows(corpus, name, lang) for lang in languages}
            manifest_sources[name] = {"kind": CORPUS_SOURCES[name], "packages": _corpus_packages(corpus, name)}
    split_rows: dict[str, dict[str, dict[str, list[tuple[str, str, str]]]]] = {}
    cleaning: dict[str, Counter[str]] = {}
    for name, per_lang in raw.items():
        kind = source_kinds()[name]
        split_rows[name] = {}
        cleaning[name] = Counter()
        for lang, rows in per_lang.items():
            kept, why = filter_pairs(rows, [("left in English", lambda xx, en: left_in_english(xx, en, vocabulary))])
            cleaning[name].update(why)
            firefox_split = {k: s for k, _, _, s in read_pair_rows(corpus, lang)} if name == "firefox" else None
            split_rows[name][lang] = assign_splits(kept, kind, f"{name}-{lang}", firefox_split)
    dropped = decontaminate(split_rows)
    out_dir = corpus / SOURCES_DIR
    for name, per_lang in split_rows.items():
        counts = {}
        for lang, splits in sorted(per_lang.items()):
            rows = [(k, x, e, split) for split in ("train", "dev", "test") for k, x, e in splits[split]]
            if not any(splits[s] for s in ("dev", "test")):
                continue
            write_rows(out_dir / name / f"{lang}-en.tsv", rows)
            counts[lang] = {s: len(splits[s]) for s in ("train", "dev", "test")}
        manifest_sources[name]["languages"] = counts
        manifest_sources[name]["dropped_in_cleaning"] = dict(cleaning[name])
        manifest_sources[name]["totals"] = {s: sum(c[s] for c in counts.values()) for s in ("train", "dev", "test")}
    manifest = {
        "version": SOURCES_VERSION, "sources": manifest_sources, "dropped_as_held_out": dropped,
        "rules": {"split": f"hash of the normalised English ({SPLIT_SEED}): test {SPLIT_SHARES[0][1]}, dev {SPLIT_SHARES[1][1]}, "
                           "the rest train; Firefox keeps the corpus's own split",
                  "decontamination": "no train or dev row shares a normalised text with any test row of any source, "
                                     "no train row with any dev row (English side across languages, translations per language)",
                  "eval_rows": f"dev/test interface rows need >= {MIN_EVAL_WORDS} English words; prose {PROSE_MIN_WORDS}-"
                               f"{PROSE_MAX_CHARS} characters; caps {EVAL_CAP} and train {TRAIN_CAP} per language and source",
                  "reserved": "catalogues of the system locale directory of a fresh machine and their projects are never read"},
        "seconds": round(time.perf_counter() - started, 1),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    logger.info("held-out sources: %d sources in %.0f s", len(names), manifest["seconds"])
    return manifest


def _corpus_packages(corpus: Path, name: str) -> list[dict[str, str]]:
    """Package versions and licences of a source the corpus holds (from its manifests)."""
    if name in ("libreoffice", "libreoffice-help"):
        counts = corpus / "extra" / name / "counts.json"
        report = json.loads(counts.read_text()) if counts.is_file() else {}
        if name == "libreoffice":
            return report.get("sources", [])
        versions = {c.get("package"): c.get("version") for c in report.get("languages", {}).values() if c.get("package")}
        english = report.get("english", {})
        versions[english.get("package")] = english.get("version")
        return [{"package": p, "version": v, "registry": "debian", "licence": report.get("licence", "MPL-2.0")}
                for p, v in sorted(versions.items()) if p]
    from training.corpus import load_manifest

    manifest = load_manifest(corpus)
    prefix = "firefox-esr-l10n-" if name == "firefox" else "vlc"
    return [s for s in manifest.get("sources", []) if str(s.get("package", s.get("name", ""))).startswith(prefix)]


def load_manifest(corpus: Path) -> dict[str, Any]:
    """The sources' manifest, or an empty one when not built."""
    path = corpus / SOURCES_DIR / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else {}


def ensure_sources(corpus: Path, languages: Sequence[str], downloads: Path | None = None) -> dict[str, Any]:
    """The sources' manifest, built when missing or stale (a few minutes: about 60 MB of packages)."""
    manifest = load_manifest(corpus)
    if manifest.get("version") == SOURCES_VERSION and set(manifest.get("sources", {})) >= set(source_kinds()):
        return manifest
    if downloads is None:
        from sprachbund_router.paths import data_dir

        downloads = data_dir() / "downloads"
    return build_sources(corpus, languages, downloads)


def read_source(corpus: Path, name: str, lang: str, split: str) -> list[tuple[str, str]]:
    """(text, English) rows of one source, language and split (empty when none)."""
    path = corpus / SOURCES_DIR / name / f"{lang}-en.tsv"
    if not path.is_file():
        return []
    rows = (line.split("\t") for line in path.read_text(encoding="utf-8").splitlines())
    return [(r[1], r[2]) for r in rows if len(r) == 4 and r[3] == split]


def main() -> None:
    """Command line: build the sources for the default router's languages."""
    from sprachbund_router.config import RouterConfig
    from sprachbund_router.paths import data_dir, default_router_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sources", default=None, help="Comma-separated (default: all).")
    parser.add_argument("--corpus", default=None, help="Corpus directory (default: the package's).")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    corpus = Path(args.corpus) if args.corpus else data_dir() / "corpus"
    languages = RouterConfig.load(default_router_dir()).languages
    manifest = build_sources(corpus, languages, data_dir() / "downloads", args.sources.split(",") if args.sources else None)
    for name, info in manifest["sources"].items():
        print(f"{name:20s} {info['kind']:9s} {len(info['languages']):3d} languages  {info['totals']}")
    print("dropped as held out:", manifest["dropped_as_held_out"])


if __name__ == "__main__":
    main()
