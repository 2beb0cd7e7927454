"""Evaluation: retrieval (paper Table 3), classification heads, language ID and routing.

Every function returns plain dicts (written as JSON by ``sbr eval``) and computes what it
reports from the data; nothing is copied from a previous run.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sprachbund_router.config import invert_sprachbunds
from sprachbund_router.index import top_k_cosine
from sprachbund_router.router import SprachbundRouter
from training.corpus import read_bitext
from training.metrics import bidirectional_accuracy

logger = logging.getLogger(__name__)

#: The language pairs of the paper's Table 3 (Tatoeba), with ``no`` written ``nb``.
TABLE3_PAIRS = [
    "de-en", "pt-en", "es-en", "nl-en", "tl-en", "ur-en", "el-en", "af-en", "fr-en", "it-en", "nl-de",
    "de-it", "es-pt", "de-el", "sv-da", "da-nb", "fr-de", "it-ro", "ar-ru", "zh-ja", "pl-cs",
]
#: XLM-R's Table 3 scores as the paper reports them (XLM-R, XLM-R CT, ours), for side-by-side reading.
TABLE3_PAPER = {
    "xlmr": [89.0, 78.7, 72.0, 77.4, 29.9, 33.4, 54.1, 53.1, 73.2, 65.9, 67.0, 55.1, 75.9, 54.5, 81.1, 89.6, 76.0, 51.2, 43.4, 52.6, 73.8],
    "xlmr_ct": [85.9, 75.5, 70.2, 77.3, 31.4, 36.5, 52.4, 57.9, 73.6, 63.5, 65.4,
                54.2, 73.2, 49.9, 79.6, 89.6, 72.3, 50.4, 46.7, 59.6, 76.8],
    "ours": [90.3, 80.6, 75.3, 79.0, 32.2, 39.8, 54.5, 57.4, 74.6, 67.9, 68.2, 57.8, 76.7, 55.3, 81.0, 89.9, 77.5, 53.3, 58.7, 61.7, 82.1],
}
LAYER_NOTE = ("vectors: masked mean of hidden_states[{layer}] (0 = embeddings, {n} = last layer), "
              "cosine similarity; base = the encoder's raw vectors, router = as served (language centring and "
              "sprachbund maps when the router has a vector space)")


def mteb_bitext_f1(queries: np.ndarray, corpus: np.ndarray) -> float:
    """MTEB's Tatoeba main score: weighted F1 of nearest-neighbour predictions, one direction.

    (MTEB's BitextMining evaluator searches the second side for each sentence of the first and
    scores the predicted indices against the gold ones with ``average="weighted"``.)
    """
    from sklearn.metrics import f1_score

    idx, _ = top_k_cosine(queries, corpus, 1)
    gold = np.arange(len(queries))
    return float(f1_score(gold, idx[:, 0], average="weighted", zero_division=0))


def _systems(router: SprachbundRouter) -> dict[str, Callable[[str, str], str]]:
    """System name -> function (src lang, tgt lang) -> encoder name that embeds both sides."""
    cfg = router.config

    def by_groups(groups: dict[str, list[str]], encoders: dict[str, str]) -> Callable[[str, str], str]:
        where = invert_sprachbunds(groups)

        def pick(a: str, b: str) -> str:
            ga, gb = where.get(a), where.get(b)
            return encoders[ga] if ga is not None and ga == gb else cfg.shared_encoder

        return pick

    systems: dict[str, Callable[[str, str], str]] = {"base": lambda a, b: cfg.shared_encoder}
    systems["router"] = by_groups(cfg.sprachbunds, cfg.sprachbund_encoders)
    baselines = cfg.provenance.get("baselines", {})
    if "random" in baselines and all(e in cfg.encoders for e in baselines["random"]["sprachbund_encoders"].values()):
        systems["random"] = by_groups(baselines["random"]["sprachbunds"], baselines["random"]["sprachbund_encoders"])
    if "all" in baselines and baselines["all"]["encoder"] in cfg.encoders:  # published routers leave baselines out
        systems["all"] = lambda a, b, _e=baselines["all"]["encoder"]: _e
    return systems


def evaluate_retrieval(
    router: SprachbundRouter, corpus_dir: Path, pairs: Sequence[str] = TABLE3_PAIRS, n: int = 1000, batch_size: int = 64
) -> dict[str, Any]:
    """Top-1 accuracy both ways (and MTEB's F1) per language pair and system.

    Systems: ``base`` (the shared encoder's raw vectors), ``router`` (what the router serves:
    sprachbund encoder when both languages share a sprachbund, else the shared encoder, then
    each side's centring and map when the encoder has a vector space), and the ``random`` / ``all``
    baselines when the router has them. Encodings are shared between systems that resolve to
    the same encoder, so a router without trained encoders costs one pass.
    """
    systems = _systems(router)
    cache: dict[tuple[int, str, int], np.ndarray] = {}

    def vectors(system: str, enc_name: str, texts: list[str], lang: str, tag: str) -> np.ndarray:
        enc = router.encoder(enc_name)
        key = (id(enc), tag, len(texts))
        if key not in cache:
            cache[key] = enc.encode(texts, batch_size=batch_size)
        if system == "base" or enc_name not in router.spaces:  # the base system is the shared encoder's raw vectors
            return cache[key]
        return router.apply_space(cache[key], [lang] * len(texts), enc_name)

    from tqdm.auto import tqdm

    rows = []
    for pair in tqdm(pairs, desc="retrieval pairs", unit="pair"):
        src, tgt = pair.split("-")
        bitext = read_bitext(corpus_dir, src, tgt, n)
        if len(bitext) < 100:
            logger.warning("skipping %s: only %d pairs", pair, len(bitext))
            continue
        row: dict[str, Any] = {"pair": pair, "n": len(bitext), "systems": {}}
        for name, pick in systems.items():
            enc_name = pick(src, tgt)
            a = vectors(name, enc_name, [p[0] for p in bitext], src, f"{pair}:src")
            b = vectors(name, enc_name, [p[1] for p in bitext], tgt, f"{pair}:tgt")
            acc = bidirectional_accuracy(a, b)
            row["systems"][name] = {**{k: round(100 * v, 2) for k, v in acc.items()},
                                    "mteb_f1": round(100 * mteb_bitext_f1(a, b), 2), "encoder": enc_name}
        rows.append(row)
        logger.info("%s: %s", pair, {k: v["mean"] for k, v in row["systems"].items()})
    average = {name: round(float(np.mean([r["systems"][name]["mean"] for r in rows])), 2) for name in systems} if rows else {}
    enc = router.encoder(router.config.shared_encoder)
    return {
        "task": "retrieval",
        "convention": LAYER_NOTE.format(layer=enc.layer, n=enc.num_layers),
        "metric": "top-1 accuracy (%) xx->yy, yy->xx and mean; mteb_f1: weighted F1 of xx->yy (MTEB Tatoeba main score)",
        "data": "Firefox interface strings (Debian firefox-esr-l10n), test split; non-English pairs joined on message ids",
        "systems": list(systems),
        "pairs": rows,
        "average": average,
    }


def evaluate_classification(
    router: SprachbundRouter, corpus_dir: Path, languages: Sequence[str] | None = None,
    max_per_language: int = 300, max_test_per_language: int = 200,
) -> dict[str, Any]:
    """Emoji-topic accuracy per language, per setting, for heads on the vectors the router
    serves versus heads trained the same way on the base (shared) encoder's raw vectors."""
    import tempfile

    from training.heads import HeadTrainingConfig, train_heads

    cfg = router.config
    langs = set(languages or cfg.languages)
    groups = {g: [m for m in members if m in langs] for g, members in cfg.sprachbunds.items()}
    groups = {g: m for g, m in groups.items() if m}
    pivots = {g: cfg.pivots.get(g, m[0]) if cfg.pivots.get(g) in m else m[0] for g, m in groups.items()}
    head_cfg = HeadTrainingConfig(max_per_language=max_per_language, max_test_per_language=max_test_per_language)
    out: dict[str, Any] = {"task": "classification", "dataset": "emoji-topic (CLDR names, Unicode groups; 8 classes)",
                           "protocol": "logistic-regression heads on frozen pooled vectors; test = emoji unseen in training",
                           "results": {}}
    from training.stages import served_embed

    shared = router.encoder(cfg.shared_encoder)
    systems = {"base": lambda g, lang, texts: shared.encode(texts), "router": served_embed(router)}
    for system, embed in systems.items():
        with tempfile.TemporaryDirectory() as tmp:
            heads = train_heads(corpus_dir, groups, pivots, embed, Path(tmp) / "heads", head_cfg)
            from sprachbund_router.heads import ClassificationHead

            for task, per_group in heads.items():
                if ":" not in task:
                    continue
                setting = task.split(":")[1]
                per_lang = {}
                for p in per_group.values():
                    per_lang.update({k: v for k, v in ClassificationHead.load(Path(tmp) / p).config.metrics.items() if k != "mean"})
                out["results"].setdefault(setting, {})[system] = {
                    "per_language": {k: round(100 * v, 2) for k, v in sorted(per_lang.items())},
                    "mean": round(100 * float(np.mean(list(per_lang.values()))), 2) if per_lang else None,
                }
    return out


# ------------------------------------------------------------------------------ language ID
def langid_test_set(corpus_dir: Path, languages: Sequence[str], per_bucket: int = 100) -> list[tuple[str, str, str]]:
    """(language, bucket, text): Firefox test strings (untranslated ones left out) and the test
    half of the CLDR emoji names; the router's threshold is calibrated on the other halves."""
    from training.calibration import routing_set

    return routing_set(corpus_dir, languages, "test", per_bucket)


#: Languages each package can name, where the package lists them (used for a fair subset).
SUPPORTED: dict[str, set[str]] = {}


def other_identifiers() -> dict[str, Callable[[list[str]], list[str | None]]]:
    """Language-ID packages installed besides the router's (each maps to ISO 639-1 codes)."""
    from training.languages import normalize_code

    found: dict[str, Callable[[list[str]], list[str | None]]] = {}
    try:
        import langid

        def _langid(texts: list[str]) -> list[str | None]:
            return [normalize_code(langid.classify(t)[0]) for t in texts]

        found["langid (all 97)"] = _langid
    except ImportError:
        pass
    try:
        import gcld3

        det = gcld3.NNetLanguageIdentifier(min_num_bytes=0, max_num_bytes=1000)

        def _cld3(texts: list[str]) -> list[str | None]:
            return [normalize_code(det.FindLanguage(text=t).language) for t in texts]

        found["cld3"] = _cld3
    except ImportError:
        pass
    try:
        from langdetect import DetectorFactory, LangDetectException, detect

        DetectorFactory.seed = 0

        def _langdetect(texts: list[str]) -> list[str | None]:
            out: list[str | None] = []
            for t in texts:
                try:
                    out.append(normalize_code(detect(t)))
                except LangDetectException:
                    out.append(None)
            return out

        found["langdetect"] = _langdetect
        import os

        import langdetect as _ld

        SUPPORTED["langdetect"] = {normalize_code(n) for n in os.listdir(os.path.join(os.path.dirname(_ld.__file__), "profiles"))}
    except ImportError:
        pass
    try:
        from lingua import LanguageDetectorBuilder

        lingua = LanguageDetectorBuilder.from_all_languages().build()

        def _lingua(texts: list[str]) -> list[str | None]:
            res = lingua.detect_languages_in_parallel_of(texts)
            return [normalize_code(r.iso_code_639_1.name.lower()) if r else None for r in res]

        found["lingua"] = _lingua
        from lingua import Language

        SUPPORTED["lingua"] = {normalize_code(lang.iso_code_639_1.name.lower()) for lang in Language.all()}
    except ImportError:
        pass
    return found


def _short_text_speed(route: Callable[[list[str]], Any], short: Sequence[str], n: int = 20_000, repeats: int = 3) -> float:
    """Routing decisions per second on 1-2-word texts (the identifier's hardest and most common
    load): the test strings cycled to ``n`` texts, best of ``repeats`` runs, one process."""
    import time

    if not short:
        return float("nan")
    texts = [short[i % len(short)] for i in range(n)]
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        route(texts)
        best = min(best, time.perf_counter() - started)
    return n / best


def evaluate_langid(router: SprachbundRouter, corpus_dir: Path, per_bucket: int = 100,
                    languages: Sequence[str] | None = None) -> dict[str, Any]:
    """Language-ID and sprachbund routing per identifier and text length, side by side, on held-out text.

    The router's identifier backends decide at the sprachbund level with their calibrated
    thresholds (``language_id.calibration``), so a text is routed right, routed wrong or sent to
    the fallback; other packages name one language each (their argmax: no fallback). Each
    identifier's speed (texts/s, one process) is measured on the same texts.
    """
    # every router language, whether or not the served identifier can name it: its texts then
    # count as routed wrong or fallen back (other packages are also compared on their common subset)
    langs = list(languages or router.config.languages)
    data = langid_test_set(corpus_dir, langs, per_bucket)
    where = router.config.language_to_sprachbund
    lid = router.config.language_id
    runs = _IdentifierRuns(router, [t for _, _, t in data], [t for _, b, t in data if b == "1-2 words"])
    common = set(langs)
    for name in runs.preds:
        common &= SUPPORTED.get(name, common)
    result: dict[str, Any] = {
        "task": "langid", "n_texts": len(data), "languages": langs, "common_languages": sorted(common),
        "data": "Firefox test split (untranslated strings left out) and the test half of the CLDR emoji names; "
                "thresholds were calibrated on the dev split and the other half",
        "served": {"backend": lid.backend, "threshold": lid.min_confidence, "level": lid.level, "by_length": lid.by_length},
        "identifiers": {name: _identifier_scores(runs.preds[name], runs.groups[name], data, langs, common, where)
                        for name in runs.preds},
    }
    for name, scores in result["identifiers"].items():
        scores["texts_per_second"] = round(runs.speed[name])
        if name in runs.short_speed and not math.isnan(runs.short_speed[name]):  # NaN: no 1-2-word texts to time
            scores["short_texts_per_second"] = round(runs.short_speed[name])
    ood = _out_of_domain(corpus_dir, langs, per_bucket, where, runs.runners)
    if ood:
        result["out_of_domain"] = ood
    return result


class _IdentifierRuns:
    """Every identifier's decisions on ``texts`` (the router's served rule, each compared backend at
    its calibrated threshold, other packages' argmax), with texts/s overall and on ``short`` texts."""

    def __init__(self, router: SprachbundRouter, texts: list[str], short: list[str]) -> None:
        from sprachbund_router.errors import CheckpointError
        from sprachbund_router.language_id import COMPARED_IDENTIFIERS, decide, decide_by_length, make_identifier

        self.preds: dict[str, list[str | None]] = {}
        self.groups: dict[str, list[str | None]] = {}
        self.speed: dict[str, float] = {}
        self.short_speed: dict[str, float] = {}
        self.runners: dict[str, Callable[[list[str]], list[Any]]] = {}
        where, lid = router.config.language_to_sprachbund, router.config.language_id
        calibrated = lid.calibration.get("backends", {})
        if lid.by_length:  # the served rule: a backend and threshold per text length
            rules, default = lid.rules()
            idents = {b: make_identifier(b, router.config.languages, router.directory) for b in lid.backends}
            name = "router: per length: " + ", ".join(f"{b} {r[0]} @ {r[1]:g}" for b, r in rules.items()) + " (served)"
            self._router_rule(name, lambda batch: decide_by_length(idents, rules, default, batch, where, lid.level), texts, short)
        for backend in COMPARED_IDENTIFIERS:
            if backend == lid.backend and not lid.by_length:
                threshold = lid.min_confidence
            else:
                threshold = (calibrated.get(backend, {}).get("threshold") or {}).get("threshold", lid.min_confidence)
            try:
                ident = make_identifier(backend, router.config.languages, router.directory)
            except CheckpointError as err:
                logger.warning("identifier %s not available: %s", backend, err)
                continue
            name = f"router: {backend} @ {threshold:g}" + (" (served)" if backend == lid.backend and not lid.by_length else "")
            self._router_rule(name, lambda batch, ident=ident, threshold=threshold: decide(ident, batch, where, threshold, lid.level),
                              texts, short)
        for name, fn in other_identifiers().items():
            logger.info("running %s on %d texts", name, len(texts))
            started = time.perf_counter()
            self.preds[name] = fn(texts)
            self.speed[name] = len(texts) / max(time.perf_counter() - started, 1e-9)
            self.groups[name] = [where.get(p, "(other)") if p is not None else None for p in self.preds[name]]

    def _router_rule(self, name: str, run: Callable[[list[str]], list[Any]], texts: list[str], short: list[str]) -> None:
        started = time.perf_counter()
        decisions = run(texts)
        self.speed[name] = len(texts) / max(time.perf_counter() - started, 1e-9)
        self.runners[name] = run
        self.short_speed[name] = _short_text_speed(run, short)
        self.preds[name] = [d.language for d in decisions]
        self.groups[name] = [d.sprachbund if d.reason is None else None for d in decisions]


def _identifier_scores(preds: Sequence[str | None], groups: Sequence[str | None], data: Sequence[tuple[str, str, str]],
                       langs: Sequence[str], common: set[str], where: dict[str, str]) -> dict[str, Any]:
    """One identifier's language and routing shares: overall, by text length, per language, on the common languages."""
    truth = np.array([where[a] for a, _, _ in data])
    lang_ok = np.array([a == b for (a, _, _), b in zip(data, preds)])
    got = np.array([g or "" for g in groups])
    routed = got != ""
    right, wrong = routed & (got == truth), routed & (got != truth)

    def pct(x: np.ndarray, m: np.ndarray) -> float:
        return round(100 * float(x[m].mean()), 2)

    by_bucket = {bucket: {"language": pct(lang_ok, m), **shares, "n": int(m.sum())}
                 for bucket, m, shares in _route_shares(got, truth, data)}
    per_lang = {}
    for lang in langs:
        m = np.array([a == lang for a, _, _ in data])
        if m.any():
            per_lang[lang] = {"language": pct(lang_ok, m), "sprachbund": pct(right, m), "wrong_sprachbund": pct(wrong, m)}
    everything = np.ones(len(data), dtype=bool)
    in_common = np.array([a in common for a, _, _ in data])
    return {"language": pct(lang_ok, everything), **_shares(got, truth, everything),
            "language_on_common": pct(lang_ok, in_common) if in_common.any() else None,
            "by_length": by_bucket, "per_language": per_lang}


def _out_of_domain(corpus_dir: Path, langs: Sequence[str], per_bucket: int, where: dict[str, str],
                   runners: dict[str, Callable[[list[str]], list[Any]]]) -> dict[str, Any] | None:
    """The router's rules on software they were not calibrated on (and the n-gram model never saw)."""
    from training.calibration import ood_routing_set

    ood = ood_routing_set(corpus_dir, langs, per_bucket)
    if not ood:
        return None
    ood_truth = np.array([where[a] for a, _, _ in ood])
    ood_texts = [t for _, _, t in ood]
    return {
        "data": "VLC interface strings (the out-of-domain set; strings left in English removed)", "n_texts": len(ood),
        "languages": sorted({a for a, _, _ in ood}),
        "identifiers": {
            name: {bucket: {**shares, "n": int(m.sum())} for bucket, m, shares in _route_shares(
                np.array([d.sprachbund if d.reason is None else "" for d in run(ood_texts)]), ood_truth, ood)}
            for name, run in runners.items()},
    }


def _shares(got: np.ndarray, truth: np.ndarray, m: np.ndarray) -> dict[str, float]:
    """Right / wrong / fallback sprachbund shares (%) of the rows ``m`` (``got``: "" = fell back)."""
    routed = got[m] != ""
    right = routed & (got[m] == truth[m])
    return {"sprachbund": round(100 * float(right.mean()), 2), "wrong_sprachbund": round(100 * float((routed & ~right).mean()), 2),
            "fallback": round(100 * float((~routed).mean()), 2)}


def _route_shares(got: np.ndarray, truth: np.ndarray, data: Sequence[tuple[str, str, str]]
                  ) -> list[tuple[str, np.ndarray, dict[str, float]]]:
    """(bucket, row mask, :func:`_shares`) for each length bucket with texts."""
    out = []
    for bucket in ("1-2 words", "3-5 words", "sentence"):
        m = np.array([b == bucket for _, b, _ in data])
        if m.any():
            out.append((bucket, m, _shares(got, truth, m)))
    return out
