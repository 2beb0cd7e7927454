"""Choices that carry over to new sources: source splits, the leave-one-source-out selector,
subspace removal and per-language maps on a mixed batch, ratio-margin scoring."""

from __future__ import annotations

import zlib
from dataclasses import replace

import numpy as np
import pytest

from sprachbund_router.index import VectorIndex, top_k_margin
from sprachbund_router.space import SpaceSpec, VectorSpace
from training.held_out_sources import assign_splits, decontaminate, split_of_message
from training.libreoffice import normalise
from training.loso import Choice, Data, Experiment, choose

# ------------------------------------------------------------------------------ margin scoring


def test_margin_scoring_against_a_hand_computed_example():
    """Two queries, three candidates, k = 1 each side: margin = cos / ((best of query + best of candidate) / 2)."""
    q = np.array([[1.0, 0.0], [0.6, 0.8]], np.float32)
    c = np.array([[0.8, 0.6], [0.0, 1.0], [1.0, 0.0]], np.float32)
    # cos: q0 -> (0.8, 0.0, 1.0); q1 -> (0.96, 0.8, 0.6)
    # query side best: q0 1.0, q1 0.96; candidate side best: c0 0.96, c1 0.8, c2 1.0
    want = np.array([[0.8 / 0.98, 0.0 / 0.9, 1.0 / 1.0], [0.96 / 0.96, 0.8 / 0.88, 0.6 / 0.98]])
    idx, scores = top_k_margin(q, c, top_k=3, k=1)
    for i in range(2):
        np.testing.assert_allclose(scores[i], np.sort(want[i])[::-1], atol=1e-6)
        assert list(idx[i]) == list(np.argsort(-want[i], kind="stable"))
    # cosine ranks c2 first for q1? no: 0.96 (c0) wins by cosine too; margin changes q1's second place
    assert list(VectorIndex(c, "e").search(q, 3, "cosine")[0][1]) == [0, 1, 2]
    assert list(idx[1]) == [0, 1, 2] and scores[1][1] == pytest.approx(0.8 / 0.88)


def test_margin_discounts_a_hub():
    """A candidate close to every query (a hub) wins by cosine but not by margin."""
    rng = np.random.default_rng(0)
    meanings = rng.normal(size=(20, 16))
    queries = meanings + 0.3 * rng.normal(size=meanings.shape)
    hub = meanings.mean(0, keepdims=True) * 3
    corpus = np.concatenate([meanings + 0.3 * rng.normal(size=meanings.shape), hub])
    unit = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    q, c = unit(queries), unit(corpus)
    gold = np.arange(20)
    cos = (VectorIndex(c, "e").search(q, 1)[0][:, 0] == gold).mean()
    margin = (VectorIndex(c, "e").search(q, 1, "margin")[0][:, 0] == gold).mean()
    assert margin >= cos


def test_margin_blocks_do_not_change_the_result():
    rng = np.random.default_rng(1)
    q = rng.normal(size=(37, 8)).astype(np.float32)
    c = rng.normal(size=(53, 8)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    whole = top_k_margin(q, c, 5)
    blocked = top_k_margin(q, c, 5, chunk=7, block=11)
    np.testing.assert_array_equal(whole[0], blocked[0])
    np.testing.assert_allclose(whole[1], blocked[1], atol=1e-6)


def test_retrieve_with_margin_scoring(toy_router):
    corpus = ["The cat sleeps.", "Good morning.", "Thank you very much."]
    queries = ["Die Katze schläft.", "Guten Morgen.", "Vielen Dank."]
    cos = toy_router.retrieve(queries, corpus, top_k=2)
    margin = toy_router.retrieve(queries, corpus, top_k=2, scoring="margin")
    assert [len(r.indices) for r in margin] == [2, 2, 2]
    assert all(r.encoder == m.encoder for r, m in zip(cos, margin))
    with pytest.raises(ValueError, match="scoring must be one of"):
        toy_router.retrieve(queries, corpus, scoring="csls-typo")


# ------------------------------------------------------------------------------ source splits
def _rows(n: int, tag: str) -> list[tuple[str, str, str]]:
    return [(f"{tag}{i}", f"{tag} übersetzt Nachricht Nummer {i}", f"Message number {i} of the program") for i in range(n)]


def test_splits_follow_the_message_not_the_source():
    """One English message lands in one split whatever the source or language."""
    for i in range(200):
        en = f"Message number {i} of the program"
        assert split_of_message(en) == split_of_message(en.upper() + " ")  # normalised
    a = assign_splits(_rows(300, "a"), "interface", "a")
    b = assign_splits(_rows(300, "b"), "interface", "b")
    where_a = {e: s for s, rows in a.items() for _, _, e in rows}
    where_b = {e: s for s, rows in b.items() for _, _, e in rows}
    assert all(where_b[e] == s for e, s in where_a.items() if e in where_b)
    assert {len(a["test"]) > 0, len(a["dev"]) > 0, len(a["train"]) > 0} == {True}


def test_decontamination_removes_every_held_out_text_from_train_and_dev():
    split_rows = {
        "one": {"de": {"test": [("k1", "Datei öffnen", "Open the file now")], "dev": [("k2", "Speichern unter", "Save it as")],
                       "train": [("k3", "Datei öffnen!", "Something else entirely"), ("k4", "Drucken", "Print"),
                                 ("k5", "Speichern unter …", "Save as something")]}},
        "two": {"de": {"test": [], "dev": [("k6", "Anders", "open the FILE now.")],
                       "train": [("k7", "Etwas", "Save it as"), ("k8", "Gut", "Good")]},
                "fr": {"test": [], "dev": [], "train": [("k9", "Ouvrir le fichier", "Open the file now")]}},
    }
    dropped = decontaminate(split_rows)
    assert [r[0] for r in split_rows["one"]["de"]["train"]] == ["k4"]  # k3: test translation; k5: dev translation
    assert split_rows["two"]["de"]["dev"] == []  # its English is a test message
    assert [r[0] for r in split_rows["two"]["de"]["train"]] == ["k8"]  # k7: dev English
    assert split_rows["two"]["fr"]["train"] == []  # English of a test row of another language and source
    assert dropped == {"train": 4, "dev": 1}


def test_built_sources_keep_test_messages_out_of_training_and_dev(tmp_path):
    """On the built sources (when present): no normalised test text of any source is in any train or dev half."""
    from sprachbund_router.paths import data_dir
    from training.held_out_sources import SOURCES_DIR, load_manifest

    corpus = data_dir() / "corpus"
    manifest = load_manifest(corpus)
    if not manifest:
        pytest.skip("held-out sources not built (python -m training.held_out_sources)")
    held: dict[str, set[str]] = {"test_en": set(), "dev_en": set()}
    own: dict[tuple[str, str], set[str]] = {}
    rows = []
    for name in manifest["sources"]:
        for path in sorted((corpus / SOURCES_DIR / name).glob("*-en.tsv")):
            lang = path.name[: -len("-en.tsv")]
            for line in path.read_text(encoding="utf-8").splitlines():
                _, xx, en, split = line.split("\t")
                rows.append((lang, xx, en, split))
                if split in ("test", "dev"):
                    held[f"{split}_en"].add(normalise(en))
                    own.setdefault((split, lang), set()).add(normalise(xx))
    assert rows
    for lang, xx, en, split in rows:
        if split in ("train", "dev"):
            assert normalise(en) not in held["test_en"] and normalise(xx) not in own.get(("test", lang), set()), (lang, en)
        if split == "train":
            assert normalise(en) not in held["dev_en"] and normalise(xx) not in own.get(("dev", lang), set()), (lang, en)


# ------------------------------------------------------------------------------ leave one source out
class _Scores:
    """A stand-in experiment: fixed dev scores per candidate label and source; records what was asked."""

    def __init__(self, table: dict[tuple[int, str], float], sources: list[str]) -> None:
        self.table = table
        self.asked: list[str] = []
        self.data = type("D", (), {"sources": sources, "kinds": dict.fromkeys(sources, "interface")})()

    def dev_scores(self, cand: Choice, source: str) -> dict[str, float]:
        self.asked.append(source)
        return {"xx": self.table[(cand.subspace_rank, source)]}


def test_the_selector_never_looks_at_the_held_out_source():
    # rank 8 is best on a and b; rank 16 wins only thanks to a huge score on c
    table = {(8, "a"): 0.8, (8, "b"): 0.8, (8, "c"): 0.1, (16, "a"): 0.7, (16, "b"): 0.7, (16, "c"): 1.0}
    stages = [("rank", [{"subspace_rank": 8}, {"subspace_rank": 16}])]
    exp = _Scores(table, ["a", "b", "c"])
    chosen, trail = choose(exp, "c", Choice(), stages)  # type: ignore[arg-type]
    assert chosen.subspace_rank == 8 and "c" not in exp.asked
    exp.asked.clear()
    chosen, _ = choose(exp, "a", Choice(), stages)  # type: ignore[arg-type]
    assert chosen.subspace_rank == 16 and "a" not in exp.asked  # mean over b, c: 0.45 vs 0.85
    assert trail[0]["chosen"].startswith("L12") and trail[0]["candidates"]


class _FakeVectors:
    """Vectors of synthetic texts: a meaning vector per English message plus a language offset."""

    def __init__(self, dim: int = 24) -> None:
        self.dim = dim
        self.offsets = {lang: 1.5 * np.random.default_rng(zlib.crc32(lang.encode())).normal(size=dim) for lang in ("en", "de", "fr", "ru")}

    def get(self, texts: list[str], layer: int) -> np.ndarray:
        out = []
        for t in texts:
            lang, msg = t.split(":", 1)
            meaning = np.random.default_rng(zlib.crc32(msg.encode())).normal(size=self.dim)
            noise = np.random.default_rng(zlib.crc32(t.encode())).normal(size=self.dim) * 0.6
            out.append(meaning + self.offsets[lang] + noise)
        v = np.array(out, np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def _toy_data() -> Data:
    rows = {}
    for s in ("s1", "s2", "s3"):
        rows[s] = {}
        for split, n in (("train", 120), ("dev", 40), ("test", 40)):
            rows[s][split] = {lang: [(f"{lang}:{s}-{split}-{i}", f"en:{s}-{split}-{i}") for i in range(n)] for lang in ("de", "fr", "ru")}
    return Data(rows, dict.fromkeys(rows, "interface"), {"de": "west", "fr": "west", "ru": "east", "en": "west"})


def test_the_protocol_on_a_toy_prefers_centring_where_languages_carry_an_offset():
    data = _toy_data()
    exp = Experiment(data, {"": _FakeVectors(), "query: ": _FakeVectors()})
    plain = Choice(centring=False)
    centred = Choice(centring=True, mean_sentences=100)
    fit_plain = exp.fit(plain, ["s1", "s2"])
    fit_centred = exp.fit(centred, ["s1", "s2"])
    base = np.mean(list(exp.score(plain, "s3", "test", fit_plain).values()))
    better = np.mean(list(exp.score(centred, "s3", "test", fit_centred).values()))
    assert better > base + 0.05
    chosen, _ = choose(exp, "s3", plain, [("means", [{"centring": False}, {"centring": True, "mean_sentences": 100}])])
    assert chosen.centring


def test_per_language_maps_are_fitted_from_the_fitting_sources_only():
    data = _toy_data()
    exp = Experiment(data, {"": _FakeVectors(), "query: ": _FakeVectors()})
    choice = Choice(maps="language", shrink_group=1.0, shrink_language=1.0)
    fitted = exp.fit(choice, ["s1"])
    assert set(fitted.maps) == {"de", "fr", "ru"}
    for w in fitted.maps.values():
        np.testing.assert_allclose(w @ w.T, np.eye(w.shape[0]), atol=1e-4)  # orthogonal
    other = exp.fit(choice, ["s2"])
    assert not np.allclose(fitted.maps["de"], other.maps["de"])
    # the sprachbund level: languages without rows of their own take their group's map
    group = exp.fit(replace(choice, maps="sprachbund"), ["s1"])
    np.testing.assert_allclose(group.maps["de"], group.maps["fr"])


# ------------------------------------------------------------------------------ the runtime space
def _space(subspace_rows: str = "all", language_maps: dict[str, str] | None = None) -> VectorSpace:
    rng = np.random.default_rng(3)
    dim = 6
    means = {"lang:de": rng.normal(size=dim) * 0.1, "lang:en": rng.normal(size=dim) * 0.1, "global": rng.normal(size=dim) * 0.1,
             "sprachbund:west": rng.normal(size=dim) * 0.1}
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    q2, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    u, _ = np.linalg.qr(rng.normal(size=(dim, 2)))
    spec = SpaceSpec(path="s.safetensors", sprachbund_maps={"west": "west"}, subspace_rows=subspace_rows,
                     language_maps=language_maps or {})
    return VectorSpace(spec, means, {"west": q, "de": q2}, {"de": "west", "fr": "west", "en": "west"}, subspace=u)


def test_subspace_and_language_maps_reach_the_right_rows_of_a_mixed_batch():
    space = _space("without own mean", {"de": "de"})
    rng = np.random.default_rng(4)
    raw = rng.normal(size=(4, 6)).astype(np.float32)
    langs, fb = ["de", "fr", "en", "de"], [False, False, False, True]
    got = space.serve(raw, langs, fb)
    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    u = space.subspace
    proj = np.eye(6) - u @ u.T
    want = np.stack([
        (unit[0] - space.means["lang:de"]) @ space.maps["de"],  # own mean, own language map, no projection
        ((unit[1] - space.means["sprachbund:west"]) @ proj) @ space.maps["west"],  # no own mean: projected, group map
        unit[2] - space.means["lang:en"],  # the anchor: own mean, never mapped
        (unit[3] - space.means["global"]) @ proj,  # fell back: global mean, projected, no map
    ])
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # one row at a time gives the same rows
    for i in range(4):
        np.testing.assert_allclose(space.serve(raw[i:i + 1], langs[i:i + 1], fb[i:i + 1])[0], got[i], atol=1e-6)


def test_subspace_space_round_trips_and_is_checked(tmp_path):
    space = _space("all")
    space.save(tmp_path)
    spec = space.spec
    back = VectorSpace.load(tmp_path, spec, space.sprachbund_of)
    np.testing.assert_allclose(back.subspace, space.subspace)
    with pytest.raises(ValueError, match="subspace_rows must be one of"):
        SpaceSpec(path="s.safetensors", subspace_rows="some")
    from sprachbund_router.errors import CheckpointError

    with pytest.raises(CheckpointError, match="has no subspace"):
        VectorSpace(spec, space.means, space.maps, space.sprachbund_of)
    with pytest.raises(ValueError, match="cannot be inverted"):
        space.pull_back(np.ones((1, 6), np.float32), ["de"])


def test_the_space_a_build_ships_serves_what_the_protocol_scored(tmp_path):
    """fit_space_from_sources (the build) and Experiment.fit + serve (the protocol) give the same
    vectors for every language, with centring, subspace removal and per-language maps."""
    import json as _json

    from training.corpus import write_rows
    from training.held_out_sources import MANIFEST, SOURCES_DIR
    from training.space import SpaceSettings, fit_space_from_sources

    data = _toy_data()
    corpus = tmp_path / "corpus"
    for s, splits in data.rows.items():
        for lang in ("de", "fr", "ru"):
            rows = [(f"k{i}", x, e, split) for split in ("train", "dev", "test") for i, (x, e) in enumerate(splits[split][lang])]
            write_rows(corpus / SOURCES_DIR / s / f"{lang}-en.tsv", rows)
    (corpus / SOURCES_DIR / MANIFEST).write_text(_json.dumps({"version": 1, "sources": {s: {"kind": "interface"} for s in data.rows}}))
    fake = _FakeVectors()
    groups = {"west": ["de", "fr", "en"], "east": ["ru"]}
    settings = SpaceSettings(protocol="sources", mean_sentences=100, maps="language", subspace_rank=4, subspace_rows="all",
                             shrink_group=1.0, shrink_language=2.0)
    fitted = fit_space_from_sources(lambda texts: fake.get(texts, 12), corpus, groups, settings)
    spec = SpaceSpec(path="s.safetensors", **fitted.spec_fields(settings))
    space = VectorSpace(spec, fitted.means, fitted.maps, {"de": "west", "fr": "west", "en": "west", "ru": "east"},
                        subspace=fitted.subspace)
    from training.loso import CAPS

    data = Data.load(corpus, sorted(data.rows), ["de", "fr", "ru", "en"], {"de": "west", "fr": "west", "en": "west", "ru": "east"},
                     CAPS, dict.fromkeys(data.rows, "interface"))  # what the build reads: the protocol's caps
    exp = Experiment(data, {"": fake})
    choice = settings.choice()
    reference = exp.fit(choice, data.sources)
    texts = {lang: [x for x, _ in data.rows["s1"]["test"][lang][:5]] for lang in ("de", "fr", "ru")}
    texts["en"] = [e for _, e in data.rows["s1"]["test"]["de"][:5]]
    for lang, ts in texts.items():
        raw = fake.get(ts, 12)
        np.testing.assert_allclose(space.serve(raw, [lang] * len(ts)), exp.serve(raw, lang, reference, choice), atol=1e-5)
    assert set(spec.language_maps) == {"de", "fr", "ru"} and spec.subspace_rows == "all"


def test_paired_comparison_of_two_backends_against_a_hand_computed_example():
    """The int8 check's drop is paired on the same rows: per-language means, their average, and a
    standard error from the per-row differences (hand-computed: d_de = [0, 1, -1, 1], d_fr = [0, 0])."""
    from training.source_eval import compare

    ref = {"s": {"de": np.array([1, 1, 0, 1], bool), "fr": np.array([1, 0], bool)},
           "t": {"de": np.array([1, 1], bool)}}
    got = {"s": {"de": np.array([1, 0, 1, 0], bool), "fr": np.array([1, 0], bool)},
           "t": {"de": np.array([1, 1], bool)}}
    out = compare(ref, got)
    s = out["sources"]["s"]
    assert (s["reference"], s["other"], s["drop"]) == (62.5, 50.0, 12.5)
    # var(d_de) = 0.75 - 0.25**2 = 0.6875 over 4 rows; fr adds 0; 100 / 2 languages * sqrt(0.6875 / 4)
    assert s["drop_se"] == pytest.approx(round(50 * np.sqrt(0.6875 / 4), 2))
    assert (s["lost"], s["gained"], s["rows"], s["languages"]) == (2, 1, 6, 2)
    assert out["sources"]["t"]["drop"] == 0.0 and out["sources"]["t"]["drop_se"] == 0.0
    assert out["worst_source"] == "s" and out["max_drop"] == 12.5 and out["mean_drop"] == 6.25
