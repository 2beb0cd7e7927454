"""Evaluation code on small hand-made cases with known answers."""

import json
import shutil

import numpy as np
import pytest

from sprachbund_router import SprachbundRouter
from training.corpus import read_bitext
from training.evaluation import _systems, evaluate_langid, evaluate_retrieval, mteb_bitext_f1


def test_mteb_f1_perfect_shuffled_and_partial():
    x = np.eye(5, dtype=np.float32)
    assert mteb_bitext_f1(x, x) == 1.0
    assert mteb_bitext_f1(x, x[[1, 2, 3, 4, 0]]) == 0.0
    partial = mteb_bitext_f1(x, x[[0, 1, 2, 4, 3]])  # 3 of 5 right
    assert partial == pytest.approx(0.6)


def _fake_corpus(root):
    rows = {
        "de": [("k1", "Die Katze sitzt", "the cat sits"), ("k2", "Der Hund läuft", "the dog runs"),
               ("k3", "Das Haus ist rot", "the house is red")],
        "fr": [("k2", "le chien court", "the dog runs"), ("k1", "le chat est assis", "the cat sits"),
               ("k3", "la maison est rouge", "the house is red")],
    }
    (root / "parallel").mkdir(parents=True)
    for lang, rs in rows.items():
        (root / "parallel" / f"{lang}-en.tsv").write_text("".join("\t".join(r) + "\n" for r in rs))
    (root / "manifest.json").write_text(json.dumps({"settings": {}, "languages": {}}))
    return root


def test_read_bitext_joins_on_message_ids(tmp_path, monkeypatch):
    import training.corpus as corpus

    monkeypatch.setattr(corpus, "DEV_SIZE", 0)
    root = _fake_corpus(tmp_path)
    assert read_bitext(root, "de", "fr") == [("Die Katze sitzt", "le chat est assis"), ("Der Hund läuft", "le chien court"),
                                             ("Das Haus ist rot", "la maison est rouge")]
    assert read_bitext(root, "en", "fr")[0] == ("the dog runs", "le chien court")


def test_systems_choose_encoders_by_group(tmp_path, toy_router_dir):
    d = tmp_path / "r"
    shutil.copytree(toy_router_dir, d)
    cfg = json.loads((d / "router_config.json").read_text())
    cfg["provenance"]["baselines"] = {
        "random": {"sprachbunds": {"r1": ["de", "ru"], "r2": ["en", "fr", "zh"]}, "sprachbund_encoders": {"r1": "east", "r2": "west"}},
        "all": {"encoder": "shared"},
    }
    (d / "router_config.json").write_text(json.dumps(cfg))
    systems = _systems(SprachbundRouter.from_pretrained(d))
    assert systems["base"]("de", "en") == "shared"
    assert systems["router"]("de", "en") == "west" and systems["router"]("de", "ru") == "shared"
    assert systems["random"]("de", "ru") == "east" and systems["random"]("de", "en") == "shared"
    assert systems["all"]("zh", "ru") == "shared"


def test_evaluate_retrieval_and_langid_on_toy(tmp_path, toy_router, monkeypatch):
    import training.corpus as corpus
    import training.evaluation as ev

    monkeypatch.setattr(corpus, "DEV_SIZE", 0)
    root = _fake_corpus(tmp_path)
    monkeypatch.setattr(ev, "read_bitext", lambda c, a, b, n: read_bitext(c, a, b, n) * 40)  # >= 100 pairs
    res = evaluate_retrieval(toy_router, root, ["de-en", "de-fr"], n=1000)
    assert [r["pair"] for r in res["pairs"]] == ["de-en", "de-fr"]
    row = res["pairs"][0]
    assert row["systems"]["router"]["encoder"] == "west" and row["systems"]["base"]["encoder"] == "shared"
    for v in row["systems"].values():
        assert 0 <= v["xx2en"] <= 100 and v["mean"] == pytest.approx((v["xx2en"] + v["en2xx"]) / 2, abs=0.01)
    assert "hidden_states[2]" in res["convention"]
    monkeypatch.setattr(ev, "other_identifiers", lambda: {"always-de": lambda texts: ["de"] * len(texts)})
    lid = evaluate_langid(toy_router, root, per_bucket=10, languages=["de", "fr"])
    always = lid["identifiers"]["always-de"]
    assert always["per_language"]["de"]["language"] == 100.0 and always["per_language"]["fr"]["language"] == 0.0
    assert always["per_language"]["fr"]["sprachbund"] == 100.0  # de and fr share a sprachbund
