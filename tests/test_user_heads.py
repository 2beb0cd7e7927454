"""Heads from a user's own labels (issue 35): English-only labels that classify every language,
through the API and `sbr train head` / `sbr classify`, saved and reloaded bit for bit."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from sprachbund_router import SprachbundRouter
from sprachbund_router.cli import app
from sprachbund_router.errors import InvalidInputError
from sprachbund_router.head_fitting import training_rows

TEST_LANGUAGES = ("de", "ru", "hi", "ja")


def _emoji(lang: str, half: str, n: int) -> list[tuple[str, str]]:
    """(CLDR name, Unicode group) of the emoji of one half: train on one half, test on the other."""
    from sprachbund_router.paths import data_dir
    from training.calibration import emoji_half
    from training.corpus import read_emoji_topic

    return [(name, label) for e, name, label in read_emoji_topic(data_dir() / "corpus", lang) if emoji_half(e) == half][:n]


def test_an_english_only_labelled_file_classifies_german_russian_hindi_and_japanese(default_router, tmp_path):
    train = _emoji("en", "dev", 500)
    (tmp_path / "labelled.tsv").write_text("".join(f"{t}\t{label}\n" for t, label in train), encoding="utf-8")
    runner = CliRunner()
    res = runner.invoke(app, ["train", "head", "--task", "topic", "--data", str(tmp_path / "labelled.tsv"),
                              "-o", str(tmp_path / "router")])
    assert res.exit_code == 0, res.output
    assert "topic/sb1" in res.output and "C=" in res.output
    labels = sorted({label for _, label in train})
    for lang in TEST_LANGUAGES:
        test = _emoji(lang, "test", 120)
        (tmp_path / f"{lang}.txt").write_text("".join(f"{t}\n" for t, _ in test), encoding="utf-8")
        res = runner.invoke(app, ["classify", str(tmp_path / f"{lang}.txt"), "-m", str(tmp_path / "router"), "--task", "topic",
                                  "--format", "jsonl"])
        assert res.exit_code == 0, res.output
        rows = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
        assert len(rows) == len(test)
        accuracy = np.mean([r["label"] == label for r, (_, label) in zip(rows, test)])
        # 8 classes (chance 0.125); measured 0.56-0.60 with 792 English names
        assert accuracy >= 0.4, (lang, accuracy)
        assert {r["label"] for r in rows} <= set(labels)


def test_fitted_heads_survive_save_and_load_bit_for_bit(default_router, tmp_path):
    router = SprachbundRouter.from_pretrained(default_router.directory)
    train = _emoji("en", "dev", 200)
    report = router.fit_head("topic", [t for t, _ in train], [label for _, label in train], languages="en")
    assert set(report) == {*router.config.sprachbunds, "*"} and all(r["train_rows"] == len(train) for r in report.values())
    texts = [t for t, _ in _emoji("de", "test", 20)] + ["🙂🙂"]  # the last falls back: the fallback head answers
    before = router.classify(texts, task="topic")
    assert before[-1].route.fallback
    router.save_pretrained(tmp_path / "saved")
    again = SprachbundRouter.from_pretrained(tmp_path / "saved")
    after = again.classify(texts, task="topic")
    assert [a.probabilities for a in after] == [b.probabilities for b in before]
    assert "emoji-topic" in again.tasks  # the router's own heads are kept beside the new one


def test_bad_labels_and_settings_are_named(default_router):
    router = SprachbundRouter.from_pretrained(default_router.directory)
    texts = ["Open the file", "Close the window", "Datei öffnen", "Fenster schließen"]
    with pytest.raises(InvalidInputError, match="one class"):
        router.fit_head("t", texts, ["a"] * 4, languages=["en", "en", "de", "de"])
    with pytest.raises(InvalidInputError, match=r"labels\[1\] is nan"):
        router.fit_head("t", texts, ["a", float("nan"), "b", "a"], languages="en")
    with pytest.raises(InvalidInputError, match="3 labels for 4 texts"):
        router.fit_head("t", texts, ["a", "b", "a"])
    with pytest.raises(InvalidInputError, match=r"labels\[2\] is empty"):
        router.fit_head("t", texts, ["a", "b", " ", "a"])
    with pytest.raises(InvalidInputError, match="English texts"):
        router.fit_head("t", texts[2:], ["a", "b"], languages="de")
    with pytest.raises(InvalidInputError, match="lack label"):  # "every": the Cyrillic sprachbund's texts lack a and b
        router.fit_head("t", [*texts, "Файл"], ["a", "b", "a", "b", "c"], languages=["en", "en", "de", "de", "ru"],
                        setting="every", per="sprachbund")
    router.fit_head("t", [*texts, "Файл"], ["a", "b", "a", "b", "c"], languages=["en", "en", "de", "de", "ru"],
                    setting="every")  # one head for all (the default) knows every label
    with pytest.raises(InvalidInputError, match="task"):
        router.fit_head("../x", texts, ["a", "b", "a", "b"], languages="en")


def test_training_rows_follow_the_papers_settings():
    langs = ["en", "de", "ru", "en", "hi"]
    groups = ["g1", "g1", "g2", "g1", "g3"]
    pivots = {"g1": "de", "g2": "ru", "g3": "hi"}
    english = training_rows("english", "sprachbund", langs, groups, ["g1", "g2", "g3"], pivots)
    assert all(rows == [0, 3] for rows in english.values())
    pivot = training_rows("pivot", "sprachbund", langs, groups, ["g1", "g2", "g3"], pivots)
    assert pivot == {"g1": [1], "g2": [2], "g3": [4], "*": [1, 2, 4]}
    every = training_rows("every", "sprachbund", langs, groups, ["g1", "g2", "g3"], pivots)
    assert every == {"g1": [0, 1, 3], "g2": [2], "g3": [4], "*": [0, 1, 2, 3, 4]}
    # a sprachbund without texts of its own is trained like the fallback head
    assert training_rows("every", "sprachbund", langs, groups, ["g1", "g2", "g3", "g4"], pivots)["g4"] == [0, 1, 2, 3, 4]
    one = training_rows("every", "all", langs, groups, ["g1", "g2", "g3"], pivots)
    assert all(rows == [0, 1, 2, 3, 4] for rows in one.values())


def test_a_pivot_missing_from_the_data_is_replaced_by_the_datas_closest_member():
    from sprachbund_router.head_fitting import data_pivots

    languages = ["de", "nl", "fr", "ru", "uk", "hi"]
    vectors = np.array([[1, 0.1, 0], [0.9, 0.2, 0], [0.5, 0.6, 0], [0, 1, 0.1], [0, 0.9, 0.2], [0, 0, 1]], dtype=np.float32)
    members = {"west": ["de", "nl", "fr"], "east": ["ru", "uk"], "south": ["hi"]}
    pivots = {"west": "de", "east": "ru", "south": "hi"}
    # the router's pivot wherever the data has it
    assert data_pivots(members, pivots, {"de", "fr", "uk", "ru"}, languages, vectors) == {"west": "de", "east": "ru"}
    # west without German: of the two it has, Dutch (the closer to German and French) is the pivot; no Hindi: no south pivot
    got = data_pivots(members, pivots, {"nl", "fr", "uk"}, languages, vectors)
    assert got == {"west": "nl", "east": "uk"}


def test_a_label_missing_from_a_heads_rows_is_never_predicted():
    from sprachbund_router.head_fitting import fit_logistic
    from sprachbund_router.heads import HeadConfig

    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.1, (20, 4)) + np.repeat(np.eye(4)[:2], 10, axis=0)
    head = fit_logistic(x.astype(np.float32), ["a"] * 10 + ["b"] * 10, ["a", "b", "c"],
                        HeadConfig(task="t", labels=["a", "b", "c"], setting="every", train_languages=["de"])).head
    probs = head.predict_proba(np.array([[0, 0, 1, 0], [0, 0, 0, 1], [0, 0, -1, -1]], dtype=np.float32))
    assert probs[:, 2].max() < 1e-30 and np.allclose(probs.sum(1), 1)


def test_the_help_module_task_trains_each_setting_on_its_own_rows():
    """benchmarks.help_modules: which languages each setting's heads train on, and the scoring of
    heads per language on separable synthetic vectors (macro-F1 100 where the classes separate)."""
    from benchmarks.help_modules import Heads, HelpData, trained_on

    group_of = {"de": "g1", "nl": "g1", "ru": "g2", "uk": "g2"}
    assert trained_on("pivot", group_of, ["de", "nl", "ru"], {"g1": "nl", "g2": "ru"}) == {"g1": ["nl"], "g2": ["ru"]}
    assert trained_on("every", group_of, ["de", "nl", "ru"], {}) == {"g1": ["de", "nl"], "g2": ["ru"]}
    labels = ["Writer", "Calc", "Math"]
    rows = {split: {lang: [(f"{lang} {split} {i}", labels[i % 3]) for i in range(12)] for lang in ["en", *group_of]}
            for split in ("train", "dev", "test")}
    centre = {label: np.eye(8)[i] for i, label in enumerate(labels)}
    data = HelpData(rows)

    def embed(texts, langs):
        rng = np.random.default_rng(len(texts))
        return np.stack([centre[labels[int(t.split()[-1]) % 3]] for t in texts]) + rng.normal(0, 0.05, (len(texts), 8))

    heads = Heads(data, embed, labels)
    scores = heads.score({"all": ["en"]}, dict.fromkeys(data.languages, "all"))
    assert sorted(scores) == ["de", "nl", "ru", "uk"] and min(scores.values()) == 100.0
    assert heads.fit(["en"]) is heads.fit(["en"])  # one fit per set of languages, however often it is asked for
    # a group without training rows takes the fallback rule (all the plan's rows)
    assert heads.score({"g1": ["de"]}, group_of, langs=["uk"]) == {"uk": 100.0}
