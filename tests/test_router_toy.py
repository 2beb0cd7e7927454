"""Router plumbing on a toy router: routing, grouping, encoder choice, heads, save/load, errors."""

import json
import logging
import shutil

import numpy as np
import pytest

from sprachbund_router import (
    CheckpointError,
    HubAccessError,
    InvalidInputError,
    MissingHeadError,
    SprachbundRouter,
    UnknownLanguageError,
    VectorIndex,
)
from sprachbund_router.heads import ClassificationHead, HeadConfig

DE = "Die Katze sitzt auf der Matte und der Hund läuft im Haus herum"
RU = "Кошка сидит на коврике, а собака бегает по дому"
ZH = "猫坐在垫子上，狗在房子里跑来跑去"
EN = "The cat sits on the mat and the dog runs around the house"


def test_identify_and_route(toy_router):
    routes = toy_router.route([DE, RU, ZH, EN])
    assert [r.language for r in routes] == ["de", "ru", "zh", "en"]
    assert [r.sprachbund for r in routes] == ["west", "east", "east", "west"]
    assert [r.encoder for r in routes] == ["west", "east", "east", "west"]
    assert not any(r.fallback for r in routes)


def test_lang_skips_identification_and_unknown_lang_fails(toy_router):
    routes = toy_router.route([DE, RU], lang=["ru", None])
    assert routes[0].language == "ru" and routes[0].confidence == 1.0 and routes[0].encoder == "east"
    with pytest.raises(UnknownLanguageError, match="'xx' is not in any sprachbund"):
        toy_router.encode([DE], lang="xx")


@pytest.mark.parametrize("text", ["😀😀🎉", "12345 678", "!!! ???"])
def test_no_letters_falls_back_and_says_so(toy_router, text):
    route = toy_router.route([text])[0]
    assert route.fallback and route.language is None and route.encoder == "shared"
    assert "no letters" in route.reason


def test_low_confidence_falls_back(toy_router_dir):
    cfg = json.loads((toy_router_dir / "router_config.json").read_text())
    router = SprachbundRouter.from_pretrained(toy_router_dir)
    router.config.language_id.min_confidence = 1.01  # nothing is that sure
    route = router.route([DE])[0]
    assert route.fallback and route.language == "de" and "sprachbund uncertain: west" in route.reason
    assert cfg["language_id"]["min_confidence"] == 0.5


def test_encode_groups_by_sprachbund_and_keeps_order(toy_router):
    texts = [DE, RU, EN, ZH]
    out = toy_router.encode(texts)
    assert out.shape == (4, 32) and out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    west = toy_router.encoder("west").encode([DE, EN])
    east = toy_router.encoder("east").encode([RU, ZH])
    assert np.allclose(out[[0, 2]], west, atol=1e-5) and np.allclose(out[[1, 3]], east, atol=1e-5)
    raw = toy_router.encode(texts, normalize=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)


@pytest.mark.parametrize("bad", [None, [], [DE, None], [DE, 5], ["  "], b"Katze"])
def test_encode_bad_input(toy_router, bad):
    with pytest.raises(InvalidInputError):
        toy_router.encode(bad)


def test_mixed_scripts_and_huge_text(toy_router, caplog):
    mixed = "Die Katze 猫 кошка the cat"
    with caplog.at_level(logging.WARNING):
        out = toy_router.encode([mixed, "Katze " * 200_000])
    assert out.shape == (2, 32) and np.isfinite(out).all()
    assert "longer than" in caplog.text and "truncated" in caplog.text


def test_retrieve_uses_group_encoder_within_sprachbund_and_shared_across(toy_router):
    corpus = [EN, "The dog runs in the big house", "A small red cat is on the green mat"]
    res = toy_router.retrieve([DE, RU], corpus, top_k=2)
    assert res[0].encoder == "west" and res[1].encoder == "shared"
    for r in res:
        assert len(r.indices) == 2 and r.scores[0] >= r.scores[1]
    # the group encoder's scores are exactly its own cosine
    enc = toy_router.encoder("west")
    q, c = enc.encode([DE]), enc.encode(corpus)
    assert res[0].indices[0] == int(np.argmax(c @ q[0]))
    assert res[0].scores[0] == pytest.approx(float(np.max(c @ q[0])), abs=1e-5)


def test_mixed_corpus_uses_shared_encoder(toy_router):
    res = toy_router.retrieve([DE], [EN, RU, ZH, DE])
    assert res[0].encoder == "shared" and res[0].indices == [3]


def test_prebuilt_index_roundtrip(toy_router, tmp_path):
    index = toy_router.build_index([EN, "The dog runs in the big house"])
    assert index.encoder == "west"
    index.save(tmp_path / "idx.safetensors")
    loaded = VectorIndex.load(tmp_path / "idx.safetensors")
    res = toy_router.retrieve([RU], loaded)
    assert res[0].encoder == "west"
    direct = toy_router.retrieve([RU], [EN, "The dog runs in the big house"])
    assert direct[0].encoder == "shared"
    with pytest.raises(InvalidInputError, match="top_k"):
        toy_router.retrieve([DE], loaded, top_k=0)


def _add_heads(router_dir, groups=("west", "east")):
    cfg = json.loads((router_dir / "router_config.json").read_text())
    rng = np.random.default_rng(0)
    cfg["heads"] = {"topic": {}}
    for g in groups:
        head = ClassificationHead(HeadConfig("topic", ["animals", "houses"]), rng.normal(size=(2, 32)), rng.normal(size=2))
        head.save(router_dir / "heads" / "topic" / g)
        cfg["heads"]["topic"][g] = f"heads/topic/{g}"
    (router_dir / "router_config.json").write_text(json.dumps(cfg))


def test_classify_with_heads_and_missing_heads(tmp_path, toy_router_dir):
    d = tmp_path / "r"
    shutil.copytree(toy_router_dir, d)
    _add_heads(d)
    router = SprachbundRouter.from_pretrained(d)
    preds = router.classify([DE, RU], task="topic")
    assert [p.route.sprachbund for p in preds] == ["west", "east"]
    for p, text in zip(preds, [DE, RU]):
        head = router.head("topic", p.route.sprachbund)
        probs = head.predict_proba(router.encode([text]))[0]
        assert p.label == head.config.labels[int(probs.argmax())]
        assert p.score == pytest.approx(float(probs.max()), abs=1e-5)
        assert sum(p.probabilities.values()) == pytest.approx(1.0)
    with pytest.raises(MissingHeadError, match="no head for task 'sentiment'"):
        router.classify([DE], task="sentiment")
    with pytest.raises(MissingHeadError, match="fell back"):
        router.classify(["😀"], task="topic")
    assert router.tasks == ["topic"]


def test_save_pretrained_roundtrip(tmp_path, toy_router):
    out = toy_router.save_pretrained(tmp_path / "copy")
    again = SprachbundRouter.from_pretrained(out)
    assert again.config.to_dict() == toy_router.config.to_dict()
    assert np.allclose(again.encode([DE, RU]), toy_router.encode([DE, RU]), atol=1e-6)
    assert again.languages == toy_router.languages


def test_missing_encoder_dir_and_pickle_only_weights(tmp_path, toy_router_dir):
    d = tmp_path / "r"
    shutil.copytree(toy_router_dir, d)
    shutil.rmtree(d / "encoders" / "east")
    with pytest.raises(CheckpointError, match="encoder 'east'.*does not exist"):
        SprachbundRouter.from_pretrained(d)
    shutil.copytree(toy_router_dir / "encoders" / "west", d / "encoders" / "east")
    (d / "encoders" / "east" / "model.safetensors").rename(d / "encoders" / "east" / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="no .safetensors weights"):
        SprachbundRouter.from_pretrained(d)


def test_missing_and_corrupt_router(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        SprachbundRouter.from_pretrained(tmp_path / "nope")
    (tmp_path / "router_config.json").write_text("][")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        SprachbundRouter.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="backend 'tensorflow' is not available"):
        SprachbundRouter.from_pretrained(tmp_path, backend="tensorflow")


def test_offline_hub_repo_not_cached_names_repo(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubAccessError, match="'someorg/not-cached-router'.*HF_HUB_OFFLINE"):
        SprachbundRouter.from_pretrained("someorg/not-cached-router", local_files_only=True, cache_dir=tmp_path)


def test_router_loads_from_hub_cache_layout_offline(tmp_path, toy_router_dir):
    """A repo laid out as huggingface_hub caches it resolves by repo id with no network."""
    repo = tmp_path / "hub" / "models--someorg--toy-router"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = repo / "snapshots" / commit
    shutil.copytree(toy_router_dir, snap)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    router = SprachbundRouter.from_pretrained("someorg/toy-router", local_files_only=True, cache_dir=tmp_path / "hub")
    assert router.directory == snap
    assert router.route([RU])[0].sprachbund == "east"
