"""Routing calibration (not the runtime router): choose the language identifier and the sprachbund threshold on a dev split.

For every identifier backend, the held-out Firefox **dev** split (never the test split that
``sbr eval langid`` reports on) is identified once; for each threshold on P(sprachbund) (the
sum of P(language) over its languages) the share of texts routed to the right sprachbund, to a
wrong one, and to the fallback encoder is measured per length bucket. The threshold of a backend
is the lowest one that keeps wrong routes at most ``max_wrong_short`` on 1-2-word strings and
``max_wrong_sentence`` on sentences; the backend chosen is the one that routes most 1-2-word
strings right at its threshold (ties: the faster). Everything measured goes into the router
config (``language_id.calibration``) and a curve (routed-right vs wrong share) is drawn.

    python -m training.calibration ROUTER_DIR [--write] [--plot docs/results/routing_threshold.png]
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
import time
import zlib
from collections import defaultdict
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from sprachbund_router.config import LanguageIdConfig, RouterConfig, invert_sprachbunds
from sprachbund_router.language_id import BUCKETS, COMPARED_IDENTIFIERS, decide, has_letters, length_bucket, make_identifier
from training.corpus import read_emoji_topic, read_pairs, read_split_rows

logger = logging.getLogger(__name__)

#: Bump when the calibration's data or rule changes (the pipeline's stage cache is keyed by it).
ROUTING_VERSION = 7
#: The identifier whose dev-split confusions define routing-aware sprachbunds' must-links.
LINK_BACKEND = "fasttext"
THRESHOLDS = tuple(round(float(t), 3) for t in np.concatenate([np.arange(0.30, 0.89, 0.025), np.arange(0.90, 0.995, 0.01),
                                                               [0.995, 0.999]]))
#: A threshold must keep wrong routes within the bound at this percentile of a bootstrap over
#: languages (and their texts): the rate a new sample of languages would see, not the dev mean.
WRONG_PERCENTILE = 90
BOOTSTRAP = 300
#: Backends routing within this many points of the best are equivalent; the one with the fewest
#: parts (then the faster) is chosen: a simpler rule that costs less per text.
TOLERANCE = 0.5


def emoji_half(emoji: str) -> str:
    """``dev`` or ``test``: CLDR emoji names are split in two by a hash of the emoji, the same
    halves in every language (calibration never sees a name the evaluation uses)."""
    return "dev" if zlib.crc32(emoji.encode("utf-8")) % 2 == 0 else "test"


_WORD = re.compile(r"[^\W\d_]{2,}")


@lru_cache(maxsize=4)
def english_vocabulary(corpus_dir: Path) -> frozenset[str]:
    """Casefolded words of the English side of every language's Firefox **train** rows."""
    words: set[str] = set()
    for path in sorted((Path(corpus_dir) / "parallel").glob("*-en.tsv")):
        lang = path.name[: -len("-en.tsv")]
        for _, _, en, _ in read_split_rows(corpus_dir, lang, "train"):
            words.update(w.casefold() for w in _WORD.findall(en))
    return frozenset(words)


def left_in_english(text: str, english: str, vocabulary: frozenset[str]) -> bool:
    """A "translation" that is English text: identical to its English source, or (3+ words, every
    letter ASCII) at least 90% of its words English words. Firefox locales keep some strings in
    en-US while the corpus's English side is en-GB ("initialize" / "initialise"), so equality
    alone misses them; they are English, whatever the file's language."""
    if text.strip().casefold() == english.strip().casefold():
        return True
    words = [w.casefold() for w in _WORD.findall(text)]
    if len(words) < 3 or not all(c.isascii() for c in text if c.isalpha()):
        return False
    return sum(w in vocabulary for w in words) >= 0.9 * len(words)


def routing_set(corpus_dir: Path, languages: Sequence[str], split: str = "dev", per_bucket: int = 150
                ) -> list[tuple[str, str, str]]:
    """(language, bucket, text): Firefox strings of ``split`` and the CLDR emoji names of the
    same half, up to ``per_bucket`` per language and bucket.

    Firefox strings left in English (:func:`left_in_english`) are not text of the language and
    are left out; so are texts without letters. (English has no Firefox rows of its own: its
    texts are its CLDR names.) The texts are shuffled (seeded by language) before the caps, so a
    bucket is a random sample of both sources whatever the cap: taking the first ones in file
    order filled the test split's smaller buckets with Firefox strings and the dev split's
    larger ones with emoji names too, and calibration on dev then mis-predicted test.
    """
    out = []
    vocabulary = english_vocabulary(Path(corpus_dir))
    for lang in languages:
        texts = [x for x, en in read_pairs(corpus_dir, lang, split) if not left_in_english(x, en, vocabulary)]
        texts += [name for emoji, name, _ in read_emoji_topic(corpus_dir, lang) if emoji_half(emoji) == split]
        random.Random(zlib.crc32(f"{lang}/{split}".encode())).shuffle(texts)
        out += _per_bucket(lang, texts, per_bucket)
    return out


def _per_bucket(lang: str, texts: Sequence[str], per_bucket: int) -> list[tuple[str, str, str]]:
    """(lang, bucket, text) for the first ``per_bucket`` texts with letters of each length bucket."""
    buckets: dict[str, list[str]] = defaultdict(list)
    for text in texts:
        b = length_bucket(text)
        if len(buckets[b]) < per_bucket and has_letters(text):
            buckets[b].append(text)
    return [(lang, b, t) for b, ts in buckets.items() for t in ts]


def ood_routing_set(corpus_dir: Path, languages: Sequence[str], per_bucket: int = 150) -> list[tuple[str, str, str]]:
    """(language, bucket, text) from the out-of-domain VLC strings, selected like :func:`routing_set`."""
    from training.corpus import read_ood_pairs

    out = []
    vocabulary = english_vocabulary(Path(corpus_dir))
    for lang in languages:  # one source, so file order needs no shuffle
        texts = [x for x, en in read_ood_pairs(corpus_dir, lang) if not left_in_english(x, en, vocabulary)]
        out += _per_bucket(lang, texts, per_bucket)
    return out


def rates(identifier: Any, data: list[tuple[str, str, str]], sprachbund_of: dict[str, str], thresholds: Sequence[float],
          level: str = "sprachbund") -> dict[str, Any]:
    """Right / wrong / fallback shares (%) per bucket and threshold, and texts/s of identification."""
    texts = [t for _, _, t in data]
    started = time.perf_counter()
    decisions = decide(identifier, texts, sprachbund_of, 0.0, level)
    speed = len(texts) / max(time.perf_counter() - started, 1e-9)
    truth = np.array([sprachbund_of[lang] for lang, _, _ in data])
    got = np.array([d.sprachbund or "" for d in decisions])
    conf = np.array([d.confidence for d in decisions])
    lang_ok = np.array([d.language == lang for d, (lang, _, _) in zip(decisions, data)])
    lang_index = {lang: i for i, lang in enumerate(sorted({lang for lang, _, _ in data}))}
    lang_of = np.array([lang_index[lang] for lang, _, _ in data])
    out: dict[str, Any] = {"texts_per_second": round(speed), "buckets": {}}
    rng = np.random.default_rng(0)
    for bucket in BUCKETS:
        m = np.array([b == bucket for _, b, _ in data])
        if not m.any():
            continue
        right, routed = (got[m] == truth[m]), conf[m]
        go = routed[:, None] >= np.asarray(thresholds)[None, :]  # [texts, thresholds]
        wrong_q = _wrong_percentile(go & ~right[:, None], lang_of[m], len(lang_index), rng)
        rows = []
        for j, t in enumerate(thresholds):
            rows.append({"threshold": t, "right": round(100 * float((go[:, j] & right).mean()), 2),
                         "wrong": round(100 * float((go[:, j] & ~right).mean()), 2),
                         "wrong_q90": round(float(wrong_q[j]), 2),
                         "fallback": round(100 * float((~go[:, j]).mean()), 2)})
        out["buckets"][bucket] = {"n": int(m.sum()), "language_accuracy": round(100 * float(lang_ok[m].mean()), 2),
                                  "curve": rows}
    return out


def _wrong_percentile(wrong: np.ndarray, lang_of: np.ndarray, n_langs: int, rng: np.random.Generator) -> np.ndarray:
    """``WRONG_PERCENTILE`` of the wrong-route rate (%) per threshold over ``BOOTSTRAP`` resamples
    of the languages (with replacement, each bringing its texts). ``wrong``: [texts, thresholds]."""
    per_lang = np.zeros((n_langs, wrong.shape[1]))
    np.add.at(per_lang, lang_of, wrong.astype(float))
    n = np.bincount(lang_of, minlength=n_langs).astype(float)
    present = np.flatnonzero(n > 0)
    picks = rng.multinomial(len(present), np.full(len(present), 1.0 / len(present)), size=BOOTSTRAP).astype(float)
    rate = 100 * (picks @ per_lang[present]) / np.maximum(picks @ n[present], 1.0)[:, None]
    return np.percentile(rate, WRONG_PERCENTILE, axis=0)


def _wrong(row: dict[str, Any]) -> float:
    """The wrong-route rate a bound is checked against (the bootstrap percentile where measured)."""
    return float(row.get("wrong_q90", row.get("wrong", 0.0)))


def choose_threshold(measured: dict[str, Any], max_wrong_short: float, max_wrong_sentence: float) -> dict[str, Any] | None:
    """Lowest threshold meeting both bounds, with its figures per bucket (None: none meets them)."""
    buckets = measured["buckets"]
    for i, t in enumerate(THRESHOLDS):
        short = buckets.get("1-2 words", {}).get("curve", [{}] * len(THRESHOLDS))[i]
        sent = buckets.get("sentence", {}).get("curve", [{}] * len(THRESHOLDS))[i]
        if _wrong(short) <= max_wrong_short and _wrong(sent) <= max_wrong_sentence:
            return {"threshold": t, **{b: v["curve"][i] for b, v in buckets.items()}}
    return None


def calibrate(
    sprachbunds: dict[str, list[str]],
    corpus_dir: Path,
    backends: Sequence[str] = COMPARED_IDENTIFIERS,
    max_wrong_short: float = 3.0,
    max_wrong_sentence: float = 1.0,
    per_bucket: int = 150,
    plot: Path | None = None,
    directory: Path | None = None,
) -> LanguageIdConfig:
    """Measure each backend on the dev split and return the language-ID settings to use.

    Args:
        sprachbunds: the router's sprachbunds.
        corpus_dir: the built corpus (Firefox dev split).
        backends: identifiers to compare.
        max_wrong_short / max_wrong_sentence: bounds (%) on wrong-sprachbund routes.
        per_bucket: dev texts per language and length bucket.
        plot: where to draw the routed-right vs wrong curves (PNG), if given.
        directory: the router directory holding the ``ngram`` identifier (without it, backends
            using ``ngram`` are left out).
    """
    where = invert_sprachbunds(sprachbunds)
    languages = sorted(where)
    data_all = routing_set(corpus_dir, languages, "dev", per_bucket)
    measured, chosen = {}, {}
    if directory is None:
        backends = [b for b in backends if "ngram" not in b.split("+")]
    for backend in backends:
        identifier = make_identifier(backend, languages, directory)
        known = set(identifier.languages)
        # every backend on the same texts, in every router language: a language the backend cannot
        # name is routed wrong or falls back, and that counts against it
        data = data_all
        logger.info("routing calibration: %s on %d dev texts", backend, len(data))
        measured[backend] = rates(identifier, data, where, THRESHOLDS)
        measured[backend]["languages"] = len(known)
        chosen[backend] = choose_threshold(measured[backend], max_wrong_short, max_wrong_sentence)

    def score(b: str) -> tuple[float, float]:
        c = chosen[b]
        return (c["1-2 words"]["right"] if c else -1.0, measured[b]["texts_per_second"])

    best = max(backends, key=score)
    if chosen[best] is None:
        raise RuntimeError(f"no backend keeps wrong routes under {max_wrong_short}% on short strings at any threshold")
    by_length = per_length_rules(measured, {"1-2 words": max_wrong_short, "3-5 words": max_wrong_sentence,
                                            "sentence": max_wrong_sentence})
    if plot is not None:
        _plot(measured, chosen, plot)
    calibration = {
        "data": f"Firefox dev split (untranslated strings left out) and the dev half of the CLDR emoji names, held "
                f"out from what `sbr eval langid` reports on; up to {per_bucket} texts per language and length bucket, "
                f"{len(languages)} languages",
        "bounds": {"wrong_1_2_words_max": max_wrong_short, "wrong_sentence_max": max_wrong_sentence},
        "chosen": {"backend": best, **chosen[best]},
        "backends": {b: {"threshold": chosen[b], "texts_per_second": measured[b]["texts_per_second"],
                         "languages": measured[b]["languages"],
                         "language_accuracy": {k: v["language_accuracy"] for k, v in measured[b]["buckets"].items()}}
                     for b in backends},
        "rule": f"wrong routes are judged by their {WRONG_PERCENTILE}th percentile over {BOOTSTRAP} bootstrap "
                "resamples of the dev languages; default: lowest threshold with wrong routes within both bounds, "
                "backend routing most 1-2-word strings right; per length bucket: for each backend the lowest "
                "threshold with that bucket's wrong routes within its bound (1-2 words: the short bound, longer "
                f"texts: the sentence bound), then the backend routing most of the bucket right, backends within "
                f"{TOLERANCE} points of the best counting as equal: the one with the fewest parts, then the faster",
        "by_length": by_length,
    }
    logger.info("routing: %s at P(sprachbund) >= %.3f; per length: %s", best, chosen[best]["threshold"],
                {b: f"{r['backend']} @ {r['threshold']}" for b, r in by_length.items()})
    return LanguageIdConfig(backend=best, min_confidence=float(chosen[best]["threshold"]), level="sprachbund",
                            by_length={b: {"backend": r["backend"], "min_confidence": float(r["threshold"])}
                                       for b, r in by_length.items()},
                            calibration=calibration)


def per_length_rules(measured: dict[str, Any], bounds: dict[str, float]) -> dict[str, dict[str, Any]]:
    """Per length bucket: the backend and threshold routing most texts right with wrong routes
    within the bucket's bound (each backend at its lowest threshold meeting it, judged by the
    bootstrap percentile); backends within ``TOLERANCE`` points of the best count as equal and
    the one with the fewest parts wins (then the faster)."""
    rules: dict[str, dict[str, Any]] = {}
    for bucket, bound in bounds.items():
        candidates = []
        for backend, m in measured.items():
            curve = m["buckets"].get(bucket, {}).get("curve", [])
            row = next((r for r in curve if _wrong(r) <= bound), None)
            if row is not None:
                candidates.append((backend, m["texts_per_second"], row))
        if candidates:
            top = max(row["right"] for _, _, row in candidates)
            backend, _, row = min((c for c in candidates if c[2]["right"] >= top - TOLERANCE),
                                  key=lambda c: (len(c[0].split("+")), -c[1]))
            rules[bucket] = {"backend": backend, **row}
    return rules


def _plot(measured: dict[str, Any], chosen: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, bucket in zip(axes, ("1-2 words", "sentence")):
        for backend, m in measured.items():
            curve = m["buckets"].get(bucket, {}).get("curve", [])
            ax.plot([r["wrong"] for r in curve], [r["right"] for r in curve], marker=".", label=backend)
            c = chosen.get(backend)
            if c and bucket in c:
                ax.scatter([c[bucket]["wrong"]], [c[bucket]["right"]], s=60, marker="o", edgecolors="k")
        ax.axvline(3.0 if bucket == "1-2 words" else 1.0, color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel("routed to a wrong sprachbund (%)")
        ax.set_ylabel("routed to the right sprachbund (%)")
        ax.set_title(f"{bucket} (dev split); threshold sweeps along each line")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description="Choose the language identifier and sprachbund threshold of a router.")
    ap.add_argument("router_dir", type=Path)
    ap.add_argument("--write", action="store_true", help="Write the choice into the router's config.")
    ap.add_argument("--plot", type=Path, default=None)
    ap.add_argument("--per-bucket", type=int, default=150)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from sprachbund_router.paths import data_dir

    cfg = RouterConfig.load(args.router_dir)
    lid = calibrate(cfg.sprachbunds, data_dir() / "corpus", per_bucket=args.per_bucket, plot=args.plot,
                    directory=args.router_dir)
    print(json.dumps(lid.calibration, indent=1))
    if args.write:
        cfg.language_id = lid
        cfg.save(args.router_dir)


if __name__ == "__main__":
    main()


def confusion_links(
    identifier: Any, data: list[tuple[str, str, str]], min_rate: float = 0.05, buckets: Sequence[str] = ("sentence",),
    min_count: int = 1,
) -> list[dict[str, Any]]:
    """Pairs of languages the identifier confuses on held-out dev text: ``a -> b`` when at least
    ``min_rate`` of ``a``'s texts (in ``buckets``), and at least ``min_count`` of them, get ``b``
    as their most likely language (a count keeps one or two sentences of a language with little
    dev text from merging sprachbunds).

    These are the must-link constraints of routing-aware sprachbunds: languages that cannot be told
    apart should share a sprachbund, so that their probability mass routes them together.
    """
    rows = [(lang, t) for lang, b, t in data if b in buckets and lang in set(identifier.languages)]
    if not rows:
        return []
    probs = identifier.distribution([t for _, t in rows])
    langs = list(identifier.languages)
    guessed = [langs[j] for j in probs.argmax(axis=1)]
    n: dict[str, int] = defaultdict(int)
    confused: dict[tuple[str, str], int] = defaultdict(int)
    for (lang, _), g in zip(rows, guessed):
        n[lang] += 1
        if g != lang:
            confused[(lang, g)] += 1
    links = [{"a": a, "b": b, "rate": round(c / n[a], 4), "n": n[a], "count": c} for (a, b), c in confused.items()
             if c / n[a] >= min_rate and c >= min_count]
    return sorted(links, key=lambda x: (-x["rate"], x["a"], x["b"]))
