"""A real multilingual classification task: LibreOffice help paragraphs labelled by the module
their page belongs to, classified by logistic-regression heads on sentence vectors.

The label is the help page's folder (``text/swriter/...`` is Writer): Writer, Calc, Impress,
Draw, Math, Base, Basic, Chart and shared (pages about every module). The paragraphs are the
held-out source ``libreoffice-help`` (``python -m training.held_out_sources``), with its splits by
message: a hash of the English decides train / dev / test for every language alike, so no test
paragraph, in any language, was used to fit anything here or in the router.

Settings (the paper's §5.2, as :mod:`sprachbund_router.head_fitting` offers them):

* ``english``: one head trained on the English train paragraphs, tested on every other language
  (the zero-shot setting users reach for);
* ``pivot``: each group's head on the train paragraphs of its pivot language (the pivot rule on
  the languages the data has, :func:`~sprachbund_router.head_fitting.data_pivots`);
* ``every``: each group's head on the train paragraphs of its languages (English not included).

Groupings at the same data: the sprachbunds, random groups of the same sizes (two seeds), one head
for all, and (every setting) a head per language. Vectors:

* the plain model as its card says (``query: `` prefix, last layer, mean, normalised) with
  scikit-learn logistic regression, which is what a user would otherwise run;
* the best plain configuration (layer x prefix), chosen on the dev halves in the English setting;
* the router's space **refitted without this source** (the shipped setting, fitted on the other
  sources' train halves: leave one source out), each text served in its own language;
* the shipped router as a user runs it: ``fit_head`` on the English train paragraphs, then
  ``classify`` of the test paragraphs (languages identified, default backend). Its space was
  fitted with this source's train halves among the others (no test paragraph).

Regularisation is chosen by cross-validation on each head's training rows (log loss). Score:
macro-F1 (%) per language over the modules in its test rows; the mean over the non-English
languages, the lowest quarter (by the card's English-setting score) and paired differences with
their standard error over languages. Writes ``benchmarks/results/help_modules.json`` and
``docs/results/classification.md``'s table.

    .venv/bin/python -m benchmarks.help_modules
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
DOC = Path(__file__).resolve().parents[1] / "docs" / "results" / "classification.md"
SOURCE = "libreoffice-help"
#: Help folder -> module.
MODULES = {"swriter": "Writer", "scalc": "Calc", "simpress": "Impress", "sdraw": "Draw", "smath": "Math",
           "sdatabase": "Base", "sbasic": "Basic", "schart": "Chart", "shared": "shared"}
CARD = "plain model as its card says"
SPACE = "router's space (left out)"
logger = logging.getLogger("benchmarks.help_modules")

Embed = Callable[[Sequence[str], Sequence[str]], np.ndarray]


@dataclass
class HelpData:
    """Labelled paragraphs: ``rows[split][lang]`` -> [(text, module)]; English from every language's rows."""

    rows: dict[str, dict[str, list[tuple[str, str]]]] = field(default_factory=dict)

    @classmethod
    def load(cls, corpus: Path) -> HelpData:
        folder = corpus / "sources" / SOURCE
        if not folder.is_dir():
            raise SystemExit(f"no held-out source {SOURCE} in {corpus}: python -m training.held_out_sources")
        rows: dict[str, dict[str, list[tuple[str, str]]]] = {s: {} for s in ("train", "dev", "test")}
        english: dict[str, dict[str, str]] = {s: {} for s in rows}
        for path in sorted(folder.glob("*-en.tsv")):
            lang = path.name.split("-")[0]
            for line in path.read_text(encoding="utf-8").splitlines():
                key, text, en, split = line.split("\t")
                module = MODULES[key.split("/")[1]]
                rows[split].setdefault(lang, []).append((text, module))
                english[split][en] = module
        for split, per in english.items():
            rows[split]["en"] = sorted(per.items())
        return cls(rows)

    def texts(self, split: str, lang: str) -> list[str]:
        return [t for t, _ in self.rows[split].get(lang, [])]

    def labels(self, split: str, lang: str) -> list[str]:
        return [m for _, m in self.rows[split].get(lang, [])]

    @property
    def languages(self) -> list[str]:
        """The non-English languages with test rows."""
        return sorted(lang for lang in self.rows["test"] if lang != "en")


def macro_f1(truth: Sequence[str], predicted: Sequence[str]) -> float:
    """Macro-F1 (%) over the modules present in ``truth``."""
    from sklearn.metrics import f1_score

    return 100 * float(f1_score(truth, predicted, labels=sorted(set(truth)), average="macro", zero_division=0))


class Heads:
    """Fit a grouping's heads on vectors and score them per language."""

    def __init__(self, data: HelpData, embed: Embed, label_set: Sequence[str]) -> None:
        self.data, self.embed, self.label_set = data, embed, list(label_set)
        self._cache: dict[tuple[str, str], np.ndarray] = {}
        self._heads: dict[tuple[str, ...], Any] = {}  # the head trained on these languages (fits are deterministic)

    def vectors(self, split: str, lang: str) -> np.ndarray:
        if (split, lang) not in self._cache:
            texts = self.data.texts(split, lang)
            self._cache[split, lang] = self.embed(texts, [lang] * len(texts))
        return self._cache[split, lang]

    def fit(self, langs: Sequence[str]) -> Any:
        """The head trained on ``langs``' train rows (fitted once per set of languages)."""
        from sprachbund_router.head_fitting import fit_logistic
        from sprachbund_router.heads import HeadConfig

        key = tuple(langs)
        if key not in self._heads:
            x = np.concatenate([self.vectors("train", lang) for lang in langs])
            y = [m for lang in langs for m in self.data.labels("train", lang)]
            self._heads[key] = fit_logistic(x, y, self.label_set, HeadConfig(task="help", labels=self.label_set)).head
        return self._heads[key]

    def score(self, trained_on: Mapping[str, Sequence[str]], group_of: Mapping[str, str], split: str = "test",
              langs: Sequence[str] | None = None) -> dict[str, float]:
        """Language -> macro-F1 of the head of its group (group -> the languages it trains on)."""
        heads = {g: self.fit(ls) for g, ls in trained_on.items() if ls}
        out = {}
        for lang in langs or self.data.languages:
            if group_of[lang] not in heads:  # a group without training rows: the fallback head's rule (all rows)
                heads[group_of[lang]] = self.fit(sorted({la for ls in trained_on.values() for la in ls}))
            head = heads[group_of[lang]]
            probs = head.predict_proba(self.vectors(split, lang))
            out[lang] = macro_f1(self.data.labels(split, lang), [self.label_set[i] for i in probs.argmax(1)])
        return out


def trained_on(setting: str, group_of: Mapping[str, str], present: Sequence[str], pivots: Mapping[str, str]) -> dict[str, list[str]]:
    """Group -> the languages its head trains on, for ``setting``."""
    groups = sorted(set(group_of.values()))
    if setting == "pivot":
        return {g: [pivots[g]] for g in groups if g in pivots}
    return {g: sorted(lang for lang in present if group_of.get(lang) == g) for g in groups}


def compare_settings(heads: Heads, systems: Mapping[str, Mapping[str, str]], sprachbund_of: Mapping[str, str],
                     router_pivots: Mapping[str, str], languages: Sequence[str], vectors: np.ndarray) -> dict[str, dict[str, float]]:
    """Setting and grouping -> per-language macro-F1 on the test rows (English setting: one head)."""
    from sprachbund_router.head_fitting import data_pivots

    langs = heads.data.languages
    present = [lang for lang in langs if heads.data.rows["train"].get(lang)]
    sprachbund_members = {g: [la for la, x in sprachbund_of.items() if x == g] for g in set(sprachbund_of.values())}
    sprachbund_pivots = data_pivots(sprachbund_members, dict(router_pivots), set(present), languages, vectors)
    out = {"english": heads.score({"all": ["en"]}, dict.fromkeys(langs, "all")),
           "english, in English": heads.score({"all": ["en"]}, {"en": "all"}, "test", ["en"])}
    for system, group_of in {**systems, "per language": {lang: lang for lang in langs}}.items():
        members = {g: [lang for lang, x in group_of.items() if x == g] for g in set(group_of.values())}
        given = router_pivots if system == "sprachbund" else {}
        pivots = data_pivots(members, dict(given), set(present), languages, vectors)
        for setting in ("pivot", "every"):
            if setting == "pivot" and system == "per language":
                continue
            if setting == "pivot" and system == "all":  # one head on the sprachbunds' pivots: their data
                plan = {"all": sorted(set(sprachbund_pivots.values()))}
            else:
                plan = trained_on(setting, group_of, present, pivots)
            out[f"{setting}, {system}"] = heads.score(plan, group_of)
            logger.info("%s, %s: %.2f", setting, system, float(np.mean(list(out[f"{setting}, {system}"].values()))))
    return out


def summarise(scores: Mapping[str, Mapping[str, float]], reference: str, lowest: Sequence[str]) -> dict[str, Any]:
    """Mean macro-F1 over languages and the lowest quarter; each row's paired difference to ``reference``
    with its standard error over languages."""
    out = {}
    for name, per in scores.items():
        langs = sorted(per)
        row: dict[str, Any] = {"mean": round(float(np.mean([per[la] for la in langs])), 2),
                               "lowest quarter": round(float(np.mean([per[la] for la in lowest])), 2)}
        for subset, ls in (("mean", langs), ("lowest quarter", list(lowest))):
            d = np.array([per[la] - scores[reference][la] for la in ls])
            row[f"{subset}: this - {reference}"] = round(float(d.mean()), 2)
            row[f"{subset}: standard error"] = round(float(d.std(ddof=1) / np.sqrt(len(d))), 2) if len(d) > 1 else None
        out[name] = row
    return out


def plain_vectors(encoder: Any, data: HelpData) -> dict[str, Any]:
    """Prefix -> cached vectors of every help paragraph at every layer of ``training.loso.LAYERS``."""
    from sprachbund_router.paths import cache_root
    from training.loso import PREFIXES, LayerVectors

    texts = sorted({t for per in data.rows.values() for pairs in per.values() for t, _ in pairs})
    out = {}
    for prefix in PREFIXES:
        out[prefix] = LayerVectors(encoder, prefix, cache_root() / "help_modules")
        out[prefix].ensure(texts)
    return out


def left_out_space(encoder: Any, cfg: Any) -> tuple[Callable[[np.ndarray, Sequence[str]], np.ndarray], dict[str, Any]]:
    """The shipped space setting fitted on the other sources' train halves (not this source's):
    a function serving base vectors in their languages, and what it was fitted on."""
    from benchmarks.sprachbund_encoders import BaseVectors
    from sprachbund_router.paths import cache_root, data_dir
    from training.held_out_sources import ensure_sources
    from training.loso import CAPS, Choice, Data, Experiment
    from training.top_layers import LowerStates

    corpus = data_dir() / "corpus"
    sources = sorted(s for s in ensure_sources(corpus, cfg.languages)["sources"] if s != SOURCE)
    data = Data.load(corpus, sources, cfg.languages, cfg.language_to_sprachbund, {"train": CAPS["train"], "dev": 0, "test": 0})
    lower = LowerStates(encoder, 8, 64, cache_root() / "sprachbund_encoders")
    lower.ensure(data.texts())
    choice = Choice.from_record(json.loads((RESULTS / "loso.json").read_text())["results"]["shipped"]["chosen"])
    fitted = Experiment(data, {choice.prefix: BaseVectors(lower)}).fit(choice, sources)
    space = fitted.space(choice, cfg.language_to_sprachbund)
    return (lambda v, langs: space.serve(v, list(langs))), {
        "setting": choice.label(), "fitted_on": f"train halves of {len(sources)} sources (all but {SOURCE})",
        "sources": sources, "fit_vectors": "the base's last layer, 64 tokens (the sprachbund_encoders cache)"}


def product_path(data: HelpData, router_dir: Path) -> dict[str, Any]:
    """The shipped router as a user runs it: ``fit_head`` on the English train paragraphs
    (English setting), ``classify`` of each language's test paragraphs (languages identified)."""
    from sprachbund_router import SprachbundRouter

    router = SprachbundRouter.from_pretrained(router_dir)
    started = time.perf_counter()
    record = router.fit_head("help-modules", data.texts("train", "en"), data.labels("train", "en"), languages="en")
    scores, misrouted, fell_back = {}, 0, 0
    for lang in data.languages:
        got = router.classify(data.texts("test", lang), "help-modules")
        scores[lang] = macro_f1(data.labels("test", lang), [c.label for c in got])
        misrouted += sum(c.route.language not in (lang, None) for c in got)
        fell_back += sum(c.route.fallback for c in got)
    return {"scores": scores, "backend": router.backend, "misrouted": misrouted, "fell_back": fell_back,
            "c": record["*"]["c"], "seconds": round(time.perf_counter() - started, 1)}


def plain_heads(data: HelpData, layers: Mapping[str, Any], label_set: Sequence[str]) -> dict[tuple[str, int], Heads]:
    """(prefix, layer) -> heads on the plain model's vectors of that configuration."""
    from training.loso import LAYERS

    return {(prefix, layer): Heads(data, lambda ts, _, lv=lv, layer=layer: lv.get(ts, layer), label_set)
            for prefix, lv in layers.items() for layer in LAYERS}


def best_plain(data: HelpData, candidates: Mapping[tuple[str, int], Heads]) -> tuple[str, Heads, dict[str, float]]:
    """The plain configuration (layer x prefix) with the best mean dev macro-F1, English setting."""
    dev = {}
    langs = [lang for lang in data.languages if data.rows["dev"].get(lang)]
    for (prefix, layer), heads in candidates.items():
        per = heads.score({"all": ["en"]}, dict.fromkeys(langs, "all"), "dev", langs)
        dev[f"layer {layer}, prefix {prefix!r}"] = (round(float(np.mean(list(per.values()))), 2), heads)
        logger.info("plain, layer %d, prefix %r: dev %.2f", layer, prefix, dev[f"layer {layer}, prefix {prefix!r}"][0])
    label = max(dev, key=lambda k: dev[k][0])
    return label, dev[label][1], {k: v[0] for k, v in dev.items()}


def rerun_product(out: Path, router: Path | None) -> None:
    """Rerun :func:`product_path` and update its row of a stored result."""
    from sprachbund_router.paths import data_dir, default_router_dir

    result = json.loads(out.read_text())
    product = product_path(HelpData.load(data_dir() / "corpus"), router or default_router_dir())
    english = result["per_language"]["english setting"]
    english["shipped router (fit_head + classify)"] = product["scores"]
    result["product_path"] = {k: v for k, v in product.items() if k != "scores"}
    result["english_setting"] = summarise(english, CARD, result["lowest_quarter"])
    out.write_text(json.dumps(result, indent=1) + "\n")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.machine import describe
    from benchmarks.sprachbund_encoders import groupings
    from sprachbund_router.config import EncoderSpec, PoolingConfig, RouterConfig, load_language_vectors
    from sprachbund_router.encoder import SentenceEncoder
    from sprachbund_router.paths import data_dir, default_router_dir
    from training.base_model import base_model_dir, ensure_base_model
    from training.loso import CARD as CARD_SETTING

    started = time.perf_counter()
    router_dir = args.router or default_router_dir()
    cfg = RouterConfig.load(router_dir)
    data = HelpData.load(data_dir() / "corpus")
    label_set = sorted(set(MODULES.values()))
    ensure_base_model()
    encoder = SentenceEncoder.from_pretrained(base_model_dir(), PoolingConfig(-1, "mean"), EncoderSpec(path="base", max_length=256))
    layers = plain_vectors(encoder, data)
    serve, space_record = left_out_space(encoder, cfg)
    languages, lang_vectors = load_language_vectors(router_dir)
    plain = plain_heads(data, layers, label_set)
    heads = {CARD: plain[CARD_SETTING["prefix"], CARD_SETTING["layer"]],  # the card is one plain configuration
             SPACE: Heads(data, lambda ts, langs: serve(layers[""].get(ts, 12), langs), label_set)}
    best_label, best, dev_scores = best_plain(data, plain)
    systems = groupings(cfg.language_to_sprachbund)
    scores: dict[str, dict[str, dict[str, float]]] = {}
    for name in (CARD, SPACE):
        scores[name] = compare_settings(heads[name], systems, cfg.language_to_sprachbund, cfg.pivots, languages, lang_vectors)
    scores["best plain configuration (chosen on dev)"] = {"english": best.score({"all": ["en"]}, dict.fromkeys(data.languages, "all"))}
    product = product_path(data, router_dir)
    in_english = {name: round(scores[name].pop("english, in English")["en"], 2) for name in (CARD, SPACE)}
    english = {name: per["english"] for name, per in scores.items()}
    english["shipped router (fit_head + classify)"] = product["scores"]
    ranked = sorted(data.languages, key=lambda lang: english[CARD][lang])
    lowest = sorted(ranked[: max(1, len(ranked) // 4)])
    settings = {f"{name}: {k}": v for name in (CARD, SPACE) for k, v in scores[name].items()}
    return {
        "task": "LibreOffice help paragraphs classified by module (9 classes), heads on sentence vectors",
        "command": "python -m benchmarks.help_modules", "machine": describe(),
        "data": {split: {lang: len(v) for lang, v in per.items()} for split, per in data.rows.items()},
        "labels": label_set, "space": space_record,
        "best_plain": {"chosen": best_label, "dev": dev_scores},
        "product_path": {k: v for k, v in product.items() if k != "scores"},
        "lowest_quarter": lowest, "english_test_in_english": in_english,
        "english_setting": summarise(english, CARD, lowest),
        "settings": summarise(settings, f"{SPACE}: every, sprachbund", lowest),
        "per_language": {"english setting": english, "settings": settings},
        "seconds": round(time.perf_counter() - started, 1), "protocol": __doc__,
    }


def _table(rows: Mapping[str, Mapping[str, Any]], reference: str, names: Mapping[str, str]) -> list[str]:
    lines = [f"| vectors and heads | mean macro-F1 | lowest quarter | this minus {names.get(reference, reference)} (mean, ± SE) | "
             "(lowest quarter, ± SE) |", "|---|---|---|---|---|"]
    for name, row in rows.items():
        diff = [f"{row[f'{s}: this - {reference}']:+.2f} ± {row[f'{s}: standard error']:.2f}" if name != reference else ""
                for s in ("mean", "lowest quarter")]
        lines.append(f"| {names.get(name, name)} | {row['mean']:.2f} | {row['lowest quarter']:.2f} | {diff[0]} | {diff[1]} |")
    return lines


def finding(result: Mapping[str, Any]) -> str:
    """The headline in plain words (two standard errors decide)."""
    eng = result["english_setting"]
    row = eng[SPACE]
    d, se = row[f"mean: this - {CARD}"], row["mean: standard error"]
    word = "beat" if d > 2 * se else "lose to" if d < -2 * se else "tie"
    best = max(result["settings"], key=lambda k: result["settings"][k]["mean"])
    ref = f"{SPACE}: every, sprachbund"
    others = {k: v for k, v in result["settings"].items() if k.startswith(f"{SPACE}: every, ") and k != ref}

    def verdict(name: str) -> str:
        r = others[name]
        x, e = -r[f"mean: this - {ref}"], r["mean: standard error"]
        return f"{'beat' if x > 2 * e else 'lose to' if x < -2 * e else 'tie'} {name.split(', ', 1)[1]} ({x:+.2f} ± {e:.2f})"

    return (f"**Said plainly:** trained on English only, heads on the router's served vectors {word} the plain model as its "
            f"card says on the other languages ({d:+.2f} ± {se:.2f} macro-F1 points; goal: +3). The best setting overall is "
            f"{best} ({result['settings'][best]['mean']:.2f}). With labels in every language, per-sprachbund heads "
            + "; ".join(verdict(n) for n in others) + ". Differences within two standard errors are ties.")


def render(result: Mapping[str, Any]) -> str:
    """The markdown block of docs/results/classification.md (generated from the results file)."""
    n = len(result["per_language"]["english setting"][CARD])
    lines = [f"Macro-F1 (%) over the modules, mean over {n} non-English languages' test paragraphs, lowest quarter: "
             f"{', '.join(result['lowest_quarter'])}; paired differences with their standard error over languages; "
             f"`{result['command']}`, {result['machine']}.", "", "**Trained on English only** (the zero-shot setting):", ""]
    lines += _table(result["english_setting"], CARD, {})
    lines += ["", f"The best plain configuration was chosen on the dev halves: {result['best_plain']['chosen']}. The shipped "
              f"router ran on the {result['product_path']['backend']} backend with identified languages "
              f"({result['product_path']['misrouted']} test paragraphs routed to another language, "
              f"{result['product_path']['fell_back']} fell back). In English itself (the English test paragraphs, the same "
              f"heads) the plain model scores {result['english_test_in_english'][CARD]:.2f} and the router's space "
              f"{result['english_test_in_english'][SPACE]:.2f}: the space is built for crossing languages, and English "
              "itself pays for it.", "",
              "**Every setting and grouping** (the same training rows, split across heads differently):", ""]
    lines += _table(result["settings"], f"{SPACE}: every, sprachbund", {})
    return "\n".join([*lines, "", finding(result)])


DOC_BLOCK = "help-modules"
README = Path(__file__).resolve().parents[1] / "README.md"


def headline(result: Mapping[str, Any]) -> str:
    """The README's line: which vectors and which setting win, by how much."""
    eng, settings = result["english_setting"], result["settings"]
    row = eng[SPACE]
    best = max(settings, key=lambda k: settings[k]["mean"])
    ref = f"{SPACE}: every, sprachbund"
    one = settings[f"{SPACE}: every, all"]
    return (f"**Your own labels** ([docs/results/classification.md](docs/results/classification.md)): heads trained on "
            f"English LibreOffice help paragraphs (9 modules) classify 28 other languages at {row['mean']:.2f} macro-F1 on "
            f"the router's vectors against {eng[CARD]['mean']:.2f} on the plain model ({row[f'mean: this - {CARD}']:+.2f} "
            f"± {row['mean: standard error']:.2f}); with labels in every language, one head for all "
            f"({one['mean']:.2f}{', the best setting' if best == f'{SPACE}: every, all' else ''}) beats per-sprachbund heads "
            f"({settings[ref]['mean']:.2f}; {one[f'mean: this - {ref}']:+.2f} ± {one['mean: standard error']:.2f}).")


def render_files(result: Mapping[str, Any], doc: Path = DOC) -> None:
    """Write :func:`render` into docs/results/classification.md's ``<!-- help-modules -->`` block."""
    from benchmarks.loso import replace_block

    doc.write_text(replace_block(doc.read_text(encoding="utf-8"), DOC_BLOCK, render(result)), encoding="utf-8")
    README.write_text(replace_block(README.read_text(encoding="utf-8"), DOC_BLOCK, headline(result)), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--router", type=Path, default=None, help="Router directory (default: the embedded default).")
    ap.add_argument("--out", type=Path, default=RESULTS / "help_modules.json")
    ap.add_argument("--render", action="store_true", help="Only rewrite docs/results/classification.md's table from --out.")
    ap.add_argument("--product-only", action="store_true",
                    help="Only rerun the shipped router's fit_head + classify (e.g. after a backend change) into --out.")
    args = ap.parse_args(argv)
    if args.product_only:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
        rerun_product(args.out, args.router)
    elif not args.render:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
        result = run(args)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    result = json.loads(args.out.read_text())
    if args.out.resolve() == (RESULTS / "help_modules.json").resolve():
        render_files(result)
    print(render(result))


if __name__ == "__main__":
    main()
