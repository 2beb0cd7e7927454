"""The router's vector space (language centring, per-sprachbund maps): loading, applying it to
the right rows of a mixed batch, saving, fitting, and the errors of damaged or foreign files."""

import json
import shutil

import numpy as np
import pytest

from sprachbund_router import CheckpointError, SprachbundRouter
from sprachbund_router.space import SpaceSpec
from sprachbund_router.tensors import load_tensors, save_tensors
from tests.toy import write_toy_space_router

DE = "Die Katze sitzt auf der Matte und der Hund läuft im Haus herum"
RU = "Кошка сидит на коврике, а собака бегает по дому"
ZH = "猫坐在垫子上，狗在房子里跑来跑去"
EN = "The cat sits on the mat and the dog runs around the house"


@pytest.fixture(scope="module")
def space_router_dir(tmp_path_factory):
    return write_toy_space_router(tmp_path_factory.mktemp("space-router"))


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _expected(router, text, lang, group, fallback=False):
    """The served vector computed by hand from the space file."""
    tensors, meta = load_tensors(router.directory / "spaces" / "shared.safetensors")
    means = dict(zip(meta["mean_keys"], tensors["means"]))
    raw = router.encoder("shared").encode([text])[0]
    if fallback:
        mean = means["global"]
    else:
        mean = means.get(f"lang:{lang}", means.get(f"sprachbund:{group}"))
    v = _unit(raw) - mean
    if not fallback and lang != "en":
        v = v @ tensors[f"map.{group}"]
    return _unit(v)


def test_space_is_applied_to_each_row_by_its_own_language(space_router_dir):
    router = SprachbundRouter.from_pretrained(space_router_dir)
    texts = [DE, RU, EN, ZH, "😀🎉"]
    out = router.encode(texts)
    routes = router.route(texts)
    assert [r.language for r in routes[:4]] == ["de", "ru", "en", "zh"] and routes[4].fallback
    want = [_expected(router, DE, "de", "west"), _expected(router, RU, "ru", "east"), _expected(router, EN, "en", "west"),
            _expected(router, ZH, "zh", "east"),  # zh has no mean of its own: its sprachbund's
            _expected(router, "😀🎉", None, None, fallback=True)]  # fell back: global mean, no map
    np.testing.assert_allclose(out, np.stack(want), atol=1e-5)
    # each row is what it is alone: the batch does not mix languages' means or maps
    alone = np.stack([router.encode([t])[0] for t in texts])
    np.testing.assert_allclose(out, alone, atol=1e-5)
    raw = router.encoder("shared").encode(texts)
    assert np.abs(out - raw).max() > 0.1  # the space does change the vectors


def test_retrieve_and_index_use_the_space_on_both_sides(space_router_dir):
    router = SprachbundRouter.from_pretrained(space_router_dir)
    corpus = [EN, "the red house is big", "a small green dog"]
    hits = router.retrieve([DE, RU], corpus, top_k=3)
    c_vecs = router.encode(corpus)
    q_vecs = router.encode([DE, RU])
    for hit, q in zip(hits, q_vecs):
        np.testing.assert_allclose(hit.scores, np.sort(c_vecs @ q)[::-1], atol=1e-5)
    index = router.build_index(corpus)
    np.testing.assert_allclose(index.vectors, c_vecs, atol=1e-5)


def test_config_records_parts_and_save_pretrained_copies_the_space(space_router_dir, tmp_path):
    router = SprachbundRouter.from_pretrained(space_router_dir)
    cfg = json.loads((space_router_dir / "router_config.json").read_text())
    assert cfg["sprachbund_parts"] == {"west": {"encoder": "shared", "adapter_of": None, "space": ["centring", "map:west"]},
                                      "east": {"encoder": "shared", "adapter_of": None, "space": ["centring", "map:east"]}}
    out = router.save_pretrained(tmp_path / "copy")
    assert (out / "spaces" / "shared.safetensors").is_file()
    again = SprachbundRouter.from_pretrained(out)
    np.testing.assert_allclose(again.encode([DE, ZH]), router.encode([DE, ZH]), atol=1e-6)


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_missing_space_file_is_a_checkpoint_error(space_router_dir, tmp_path):
    d = _copy(space_router_dir, tmp_path / "r")
    (d / "spaces" / "shared.safetensors").unlink()
    with pytest.raises(CheckpointError, match="space of encoder 'shared'.*not found"):
        SprachbundRouter.from_pretrained(d)


def test_corrupt_space_file_is_a_checkpoint_error(space_router_dir, tmp_path):
    d = _copy(space_router_dir, tmp_path / "r")
    (d / "spaces" / "shared.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError, match="corrupt"):
        SprachbundRouter.from_pretrained(d)


def test_map_of_wrong_dimension_is_refused(space_router_dir, tmp_path):
    d = _copy(space_router_dir, tmp_path / "r")
    path = d / "spaces" / "shared.safetensors"
    tensors, meta = load_tensors(path)
    tensors["map.west"] = np.eye(16, dtype=np.float32)
    save_tensors(path, tensors, meta)
    with pytest.raises(CheckpointError, match="dimension"):
        SprachbundRouter.from_pretrained(d)


def test_means_of_another_dimension_than_the_encoder_are_refused(space_router_dir, tmp_path):
    d = _copy(space_router_dir, tmp_path / "r")
    path = d / "spaces" / "shared.safetensors"
    tensors, meta = load_tensors(path)
    tensors = {"means": np.zeros((len(meta["mean_keys"]), 48), np.float32),
               **{k: np.eye(48, dtype=np.float32) for k in tensors if k.startswith("map.")}}
    save_tensors(path, tensors, meta)
    router = SprachbundRouter.from_pretrained(d)
    with pytest.raises(CheckpointError, match="dimension 48 but encoder 'shared' gives 32"):
        router.encode([DE])


def test_space_fitted_on_another_encoder_is_refused(space_router_dir, tmp_path):
    d = _copy(space_router_dir, tmp_path / "r")
    path = d / "spaces" / "shared.safetensors"
    tensors, meta = load_tensors(path)
    meta["probe_texts"] = [DE, RU]
    tensors["probe_vectors"] = np.random.default_rng(0).normal(size=(2, 32)).astype(np.float32)
    save_tensors(path, tensors, meta)
    router = SprachbundRouter.from_pretrained(d)
    with pytest.raises(CheckpointError, match="fitted on another encoder"):
        router.encode([DE])
    # the probe vectors of the right encoder pass
    tensors["probe_vectors"] = router._load_encoder("shared").encode([DE, RU])
    save_tensors(path, tensors, meta)
    assert SprachbundRouter.from_pretrained(d).encode([DE]).shape == (1, 32)


def test_config_naming_a_map_the_file_lacks_is_refused(space_router_dir, tmp_path):
    d = _copy(space_router_dir, tmp_path / "r")
    cfg = json.loads((d / "router_config.json").read_text())
    cfg["spaces"]["shared"]["sprachbund_maps"]["west"] = "nowhere"
    (d / "router_config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="names map.*nowhere"):
        SprachbundRouter.from_pretrained(d)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("missing_mean", "median", "missing_mean must be one of"),
    ("centring", "yes", "centring must be true or false"),
    ("sprachbund_maps", {"north": "west"}, "unknown sprachbund"),
])
def test_malformed_space_settings_are_refused(space_router_dir, tmp_path, key, value, message):
    d = _copy(space_router_dir, tmp_path / "r")
    cfg = json.loads((d / "router_config.json").read_text())
    cfg["spaces"]["shared"][key] = value
    (d / "router_config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=message):
        SprachbundRouter.from_pretrained(d)


def test_space_for_an_unknown_encoder_is_refused(space_router_dir, tmp_path):
    d = _copy(space_router_dir, tmp_path / "r")
    cfg = json.loads((d / "router_config.json").read_text())
    cfg["spaces"]["ghost"] = cfg["spaces"].pop("shared")
    (d / "router_config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="spaces names encoder 'ghost'"):
        SprachbundRouter.from_pretrained(d)


def test_pull_back_inverts_the_space_row_by_row(space_router_dir):
    """What a residual adapter is trained towards: unit vectors that the space turns into the targets."""
    router = SprachbundRouter.from_pretrained(space_router_dir)
    space = router.spaces["shared"]
    rng = np.random.default_rng(0)
    targets = _unit(rng.normal(size=(5, space.dim)).astype(np.float32))
    langs, fb = ["de", "ru", "en", "zh", None], [False] * 4 + [True]
    raw = space.pull_back(targets, langs, fb)
    np.testing.assert_allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(space.serve(raw, langs, fb), targets, atol=1e-4)
    # and the base's own vectors are their own pull-back of what the space serves
    texts = [DE, RU, EN, ZH]
    base = _unit(router.encoder("shared").encode(texts))
    served = space.serve(base, langs[:4], fb[:4])
    np.testing.assert_allclose(space.pull_back(served, langs[:4]), base, atol=1e-4)
    with pytest.raises(ValueError, match="5 targets but 4 languages"):
        space.pull_back(targets, langs[:4])


def test_spec_parts():
    spec = SpaceSpec(path="s.safetensors", sprachbund_maps={"a": "a", "b": "all", "c": None})
    assert spec.parts("a") == ["centring", "map:a"] and spec.parts("b") == ["centring", "map:all"]
    assert spec.parts("c") == ["centring"] and SpaceSpec(path="x", centring=False).parts("a") == []


def _synthetic_corpus(root, groups, n_meanings=800, dim=24, seed=0):
    """A corpus whose 'encoder' rotates each sprachbund's meanings its own way and shifts each
    language by its own offset: centring must remove the shifts and sprachbund maps the rotations."""
    from training.corpus import split_of

    rng = np.random.default_rng(seed)
    meanings = rng.normal(size=(n_meanings, dim))
    rot = {g: np.linalg.qr(rng.normal(size=(dim, dim)))[0] for g in groups}
    rot["en"] = np.eye(dim)
    offset = {lang: rng.normal(size=dim) * 2.0 for ms in groups.values() for lang in ms}
    offset["en"] = rng.normal(size=dim) * 2.0
    where = {m: g for g, ms in groups.items() for m in ms}
    english = [f"english sentence number {i}" for i in range(n_meanings)]
    (root / "parallel").mkdir(parents=True)
    (root / "mono").mkdir()
    for lang in where:
        rows = [(f"k{i}", f"{lang} sentence number {i}", english[i], split_of(english[i])) for i in range(n_meanings)]
        rows.sort(key=lambda r: ("dev", "test", "train").index(r[3]))
        (root / "parallel" / f"{lang}-en.tsv").write_text("".join("\t".join(r) + "\n" for r in rows))
    for lang in [*where, "en"]:
        (root / "mono" / f"{lang}.txt").write_text("".join(f"{lang} mono text {k}\n" for k in range(100)))
    (root / "manifest.json").write_text(json.dumps({"settings": {}, "languages": {}, "sources": []}))

    def embed(texts):
        out = []
        for t in texts:
            lang, kind, *_, num = t.split()
            i = int(num)
            z = meanings[i % n_meanings] if kind != "mono" else np.random.default_rng(hash(t) % 2**32).normal(size=dim)
            group = "en" if lang in ("english", "en") else where[lang]
            code = "en" if lang == "english" else lang
            out.append(rot[group] @ z + offset[code])
        v = np.array(out, dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    return embed


def test_fit_space_recovers_sprachbund_rotations(tmp_path):
    from training.corpus import read_pairs
    from training.held_out_eval import make_space, served_by
    from training.space import SpaceSettings, fit_space, top1_both

    groups = {"a": ["xa", "ya"], "b": ["xb", "yb"]}
    embed = _synthetic_corpus(tmp_path, groups)

    def test_score(settings):
        if settings is None:
            serve = served_by(None)
        else:
            serve = served_by(make_space(fit_space(embed, tmp_path, groups, settings), groups, settings))
        scores = []
        for lang in ("xa", "ya", "xb", "yb"):
            pairs = read_pairs(tmp_path, lang, "test")
            scores.append(top1_both(serve(lang, embed([p[0] for p in pairs])), serve("en", embed([p[1] for p in pairs]))))
        return float(np.mean(scores))

    base = test_score(None)
    centred = test_score(SpaceSettings(maps="none", min_mean_sentences=10))
    shared = test_score(SpaceSettings(maps="all", min_mean_sentences=10))
    own = test_score(SpaceSettings(maps="sprachbund", min_mean_sentences=10))
    auto_settings = SpaceSettings(maps="auto", min_mean_sentences=10)
    auto = fit_space(embed, tmp_path, groups, auto_settings)
    assert base < 0.5 and centred < 0.5  # rotations and offsets hide the translations
    assert shared < own and own > 0.95  # one map cannot undo two rotations; one per sprachbund can
    assert auto.sprachbund_maps == {"a": "a", "b": "b"}  # chosen on dev
    assert set(auto.means) >= {"lang:xa", "lang:en", "sprachbund:a", "global"}
    # nothing of the dev or test split reached the maps' training rows
    assert set(auto.report["train_pairs"]) == {"xa", "ya", "xb", "yb"}
    for lang, n in auto.report["train_pairs"].items():
        assert n == len(read_pairs(tmp_path, lang, "train"))


def test_extra_libreoffice_pairs_feed_the_maps_but_never_held_out_text(tmp_path):
    """Extra training pairs (the LibreOffice source) are read per language, capped, counted per
    source, and rows repeating a dev/test text are dropped even when the source file has them;
    with few corpus training rows they are what makes sprachbund maps work."""
    from training.corpus import read_pair_rows, read_pairs
    from training.held_out_eval import make_space, served_by
    from training.space import SpaceSettings, fit_space, top1_both, train_pairs

    groups = {"a": ["xa", "ya"], "b": ["xb", "yb"]}
    embed = _synthetic_corpus(tmp_path, groups)
    extra = tmp_path / "extra" / "libreoffice"
    extra.mkdir(parents=True)
    held = {}
    for lang in ("xa", "ya", "xb", "yb"):
        held[lang] = [r for r in read_pair_rows(tmp_path, lang) if r[3] != "train"][:5]
        rows = [(f"lo:{i}", f"{lang} extra number {i}", f"english extra number {i}") for i in range(300)]
        rows += [(f"leak:{r[0]}", r[1], r[2]) for r in held[lang]]  # a source file that repeats held-out texts
        (extra / f"{lang}-en.tsv").write_text("".join("\t".join(r) + "\n" for r in rows))
    (extra / "counts.json").write_text(json.dumps({"languages": {}, "requested": ["xa", "xb", "ya", "yb"]}))

    from training.space import held_out_texts

    banned = held_out_texts(tmp_path, ["xa", "ya", "xb", "yb"])
    got = train_pairs(tmp_path, "xa", 10, ["libreoffice"], 10_000, banned)
    assert len(got["firefox"]) == 10 and len(got["libreoffice"]) == 300
    assert not {x for x, _ in got["libreoffice"]} & {r[1] for r in held["xa"]}
    assert len(train_pairs(tmp_path, "xa", 10, ["libreoffice"], 50, banned)["libreoffice"]) == 50

    def test_score(settings):
        serve = served_by(make_space(fit_space(embed, tmp_path, groups, settings), groups, settings))
        return float(np.mean([top1_both(serve(lang, embed([p[0] for p in pairs])), serve("en", embed([p[1] for p in pairs])))
                              for lang in ("xa", "ya", "xb", "yb") for pairs in [read_pairs(tmp_path, lang, "test")]]))

    few = SpaceSettings(maps="sprachbund", shrink=[0.0], min_mean_sentences=10, max_train_pairs=8)
    more = SpaceSettings(maps="sprachbund", shrink=[0.0], min_mean_sentences=10, max_train_pairs=8,
                         extra_pairs=["libreoffice"], max_extra_pairs=200)
    assert test_score(more) > 0.95 > test_score(few) + 0.1  # 16 rows per sprachbund cannot fit a 24-dim rotation
    fitted = fit_space(embed, tmp_path, groups, more)
    assert fitted.report["train_pairs_by_source"]["xa"] == {"firefox": 8, "libreoffice": 200}
    with pytest.raises(ValueError, match="extra_pairs: unknown source"):
        SpaceSettings(extra_pairs=["wikipedia"])
    # the shipped default space keeps its key: settings without extra sources hash as before
    assert "extra_pairs" not in SpaceSettings().key_fields() and "extra_pairs" in more.key_fields()


def test_the_space_report_runs_its_steps_on_a_small_corpus(tmp_path):
    """``python -m benchmarks.space_report``'s steps, in its order, on a synthetic corpus: every
    variant is scored on the held-out sets, and maps per sprachbund undo what they should."""
    from types import SimpleNamespace

    from benchmarks.space_report import SpaceReport, markdown
    from training.space import SpaceSettings

    groups = {"a": ["xa", "ya"], "b": ["xb", "yb"]}
    embed = _synthetic_corpus(tmp_path, groups)

    class Cache:  # the report's vector cache, without a file
        def __call__(self, texts):
            return embed(texts)

        def save(self):
            pass

    cfg = SimpleNamespace(sprachbunds=groups, languages=["en", "xa", "ya", "xb", "yb"], spaces={})
    report = SpaceReport(cfg, None, tmp_path, Cache(), n=200)
    report.shipped(None)
    report.fitted("centred", "minus the language mean", SpaceSettings(maps="none", min_mean_sentences=10))
    report.fitted("+ maps: sprachbund", "a map per sprachbund", SpaceSettings(maps="sprachbund", shrink=[0.0],
                                                                              min_mean_sentences=10))
    policies = report.fallback_policies()
    record = report.record(heads=False)
    assert set(record["variants"]) == {"base", "centred", "+ maps: sprachbund"}
    assert record["variants"]["base"]["test"] < 50 < 95 < record["variants"]["+ maps: sprachbund"]["test"]
    assert set(policies) == {"global", "none"} and record["command"].startswith("python -m benchmarks.space_report")
    assert "| + maps: sprachbund |" in markdown(record)
