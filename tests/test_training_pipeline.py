"""`sbr train build` with the tiny CPU config, end to end on real data, and its failure modes."""

import dataclasses
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from sprachbund_router import SprachbundRouter
from sprachbund_router.paths import data_dir
from training import mlm as mlm_module
from training.mlm import MLMConfig, continue_pretraining
from training.pipeline import build_router, load_build_config
from training.sprachbunds import compute_language_vectors

TINY = Path(__file__).resolve().parents[1] / "training" / "configs" / "tiny.toml"
EMOJI_CLASSES = 8


def assert_loads_in_sentence_transformers(router, folder: Path, name: str, layers: int, truncated_from: int | None) -> None:
    """The router directory's own encoder folder is a sentence-transformers model with the router's vectors."""
    from sentence_transformers import SentenceTransformer

    assert {"modules.json", "sentence_bert_config.json", "config_sentence_transformers.json"} <= {p.name for p in folder.iterdir()}
    config = json.loads((folder / "config.json").read_text())
    assert config["num_hidden_layers"] == layers and config.get("truncated_from_layers") == truncated_from
    texts = ["Die Katze schläft auf dem Sofa.", "The cat is asleep.", "Кошка спит."]
    got = SentenceTransformer(str(folder), device="cpu").encode(texts)
    want = router.encoder(name).encode(texts)
    assert np.min((got * want).sum(1)) >= 0.9999, name


@pytest.fixture(scope="module")
def tiny_router(tmp_path_factory, default_router):  # default_router: ensures the corpus and base model exist
    cfg = load_build_config(TINY)
    cfg.output_dir = str(tmp_path_factory.mktemp("tiny") / "router")
    out = build_router(cfg)
    return out, cfg


def test_tiny_build_artifacts(tiny_router):
    out, cfg = tiny_router
    config = json.loads((out / "router_config.json").read_text())
    groups = config["sprachbunds"]
    assert len(groups) == cfg.k
    assert sorted(lang for m in groups.values() for lang in m) == sorted(cfg.languages)
    for g, pivot in config["pivots"].items():
        assert pivot in groups[g]
    # language vectors: one real (non-constant) row per language
    vec = load_file(str(out / "language_vectors.safetensors"))["vectors"]
    assert vec.shape == (len(cfg.languages), 384) and np.isfinite(vec).all() and vec.std(axis=0).mean() > 0
    # analysis: report with the sprachbund table and real PNG figures
    report = (out / "analysis" / "report.md").read_text()
    for g in groups:
        assert f"| {g} |" in report
    for png in ("language_map.png", "dendrogram.png"):
        data = (out / "analysis" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    analysis = json.loads((out / "analysis" / "analysis.json").read_text())
    assert analysis["family_agreement"]["n_languages"] == len(cfg.languages)
    assert [r["k"] for r in analysis["k_selection"]] == list(range(2, min(9, len(cfg.languages))))


def test_tiny_build_encoders_were_trained(tiny_router):
    out, _ = tiny_router
    base = load_file(str(out / "encoders" / "base" / "model.safetensors"))
    key = "encoder.layer.11.output.dense.weight"
    for name in ("sb1", "sb2", "random1", "random2", "all"):
        metrics = json.loads((out / "encoders" / name / "training_metrics.json").read_text())
        assert metrics["after"]["mlm_loss"] < metrics["before"]["mlm_loss"], name
        assert metrics["nan_free"]
        trained = load_file(str(out / "encoders" / name / "model.safetensors"))
        assert not np.allclose(trained[key], base[key]), f"{name} weights did not change"
    rnd = json.loads((out / "router_config.json").read_text())["provenance"]["baselines"]["random"]["sprachbunds"]
    cfg_groups = json.loads((out / "router_config.json").read_text())["sprachbunds"]
    assert sorted(len(m) for m in rnd.values()) == sorted(len(m) for m in cfg_groups.values())


def test_tiny_build_encoders_load_in_sentence_transformers(tiny_router):
    out, _ = tiny_router
    router = SprachbundRouter.from_pretrained(out)
    for name in ("base", "sb1"):  # the shared base and a continued-pre-trained encoder (pooled at the last layer)
        assert_loads_in_sentence_transformers(router, out / "encoders" / name, name, layers=12, truncated_from=None)


def test_tiny_build_heads_beat_chance(tiny_router):
    out, _ = tiny_router
    report = json.loads((out / "training_report.json").read_text())
    for setting in ("english", "pivot", "every"):
        per_group = report["heads"][f"emoji-topic:{setting}"]
        assert set(per_group) >= {"sb1", "sb2", "*"}
        for metrics in per_group.values():
            assert metrics["mean"] > 2.5 / EMOJI_CLASSES, (setting, metrics)


def test_tiny_router_serves_encode_retrieve_classify(tiny_router):
    out, _ = tiny_router
    router = SprachbundRouter.from_pretrained(out)
    texts = ["Die Katze schläft auf dem Sofa.", "Кошка спит на диване.", "बिल्ली सोफे पर सो रही है।"]
    routes = router.route(texts)
    assert [r.language for r in routes] == ["de", "ru", "hi"]
    vecs = router.encode(texts)
    assert vecs.shape == (3, 384)
    assert np.allclose(vecs[0], router.encoder(routes[0].encoder).encode(texts[:1])[0], atol=1e-5)
    res = router.retrieve(["Der Hund bellt laut.", "Die Sonne scheint."], ["De hond blaft luid.", "De zon schijnt."], corpus_lang="nl")
    assert [r.indices[0] for r in res] == [0, 1]
    preds = router.classify(["lachendes Gesicht", "rotes Auto", "🙂"], task="emoji-topic", lang=["de", "de", None])
    labels = router.head("emoji-topic", "sb1").config.labels
    assert len(labels) == EMOJI_CLASSES and all(p.label in labels for p in preds)
    assert preds[2].route.fallback  # served by the fallback ("*") head


def test_rerun_resumes_without_retraining(tiny_router, caplog):
    out, cfg = tiny_router
    before = (out / "encoders" / "sb1" / "model.safetensors").stat().st_mtime
    config_before = (out / "router_config.json").read_text()
    with caplog.at_level(logging.INFO, logger="training"):
        build_router(cfg)  # same config, corpus and pipeline: nothing to do
    assert "is up to date" in caplog.text and "already trained" not in caplog.text
    assert (out / "router_config.json").read_text() == config_before
    # a build interrupted before the router was written resumes from the trained encoders
    (out / "router_config.json").unlink()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="training"):
        build_router(cfg)
    assert (out / "encoders" / "sb1" / "model.safetensors").stat().st_mtime == before
    assert "already trained" in caplog.text
    assert json.loads((out / "router_config.json").read_text())["sprachbunds"] == json.loads(config_before)["sprachbunds"]


def test_bad_build_inputs(tmp_path, default_router):  # default_router: the corpus exists
    bad = load_build_config(TINY)
    bad.output_dir = str(tmp_path / "x")
    bad.languages = ["de", "qqq"]
    with pytest.raises(ValueError, match=r"unknown language code\(s\) \['qqq'\]"):
        build_router(bad, corpus_dir=data_dir() / "corpus")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a corpus directory"):
        build_router(bad, corpus_dir=tmp_path / "empty")
    (tmp_path / "c.toml").write_text('name = "x"\noutput_dir = "y"\nbogus = 1\n')
    with pytest.raises(ValueError, match=r"c\.toml has unknown field\(s\) \['bogus'\]"):
        load_build_config(tmp_path / "c.toml")
    (tmp_path / "d.toml").write_text('name = "x"\noutput_dir = "y"\n[space]\nmaps = "bogus"\n')
    with pytest.raises(ValueError, match=r"d\.toml\.space: maps must be"):
        load_build_config(tmp_path / "d.toml")


def test_language_with_too_little_text_is_reported(toy_router):
    enc = toy_router.encoder("west")
    lv = compute_language_vectors(enc, {"de": ["die katze"] * 30, "en": ["the cat"] * 3}, min_sentences=20)
    assert lv.languages == ["de"] and "only 3 units" in lv.skipped["en"]
    with pytest.raises(ValueError, match="no language has at least"):
        compute_language_vectors(enc, {"en": ["the cat"] * 3}, min_sentences=20)


def test_interrupted_mlm_resumes_from_checkpoint(tmp_path, toy_router_dir, monkeypatch, caplog):
    texts = {"de": [f"die katze {i} der hund das haus" for i in range(40)], "en": [f"the cat {i} sits on the mat" for i in range(40)]}
    cfg = MLMConfig(steps=4, batch_size=4, seq_len=16, lr=1e-3, warmup_steps=1, head_warmup_steps=1,
                    checkpoint_every=2, eval_sentences=4)
    real = mlm_module.sample_batch
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # fail during the 4th update, after the step-2 checkpoint
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(mlm_module, "sample_batch", flaky)
    out = tmp_path / "enc"
    with pytest.raises(KeyboardInterrupt):
        continue_pretraining(toy_router_dir / "encoders" / "west", texts, out, cfg)
    assert (tmp_path / "enc.checkpoints" / "step-2" / "done").exists()
    monkeypatch.setattr(mlm_module, "sample_batch", real)
    with caplog.at_level(logging.INFO, logger="training"):
        metrics = continue_pretraining(toy_router_dir / "encoders" / "west", texts, out, cfg)
    assert "resuming" in caplog.text
    assert len(metrics["loss_curve"]) == 1 and metrics["languages"] == ["de", "en"]
    assert (out / "model.safetensors").is_file() and not (tmp_path / "enc.checkpoints").exists()


def test_tiny_router_exports_and_loads_from_hub_layout(tiny_router, tmp_path, monkeypatch):
    """ONNX export and Hub dry run of a trained router: same top-1 on the bundled example, both backends."""
    from exporters.onnx import export_router
    from tests.conftest import EXAMPLES, assert_hub_roundtrip

    out, _ = tiny_router
    parity = (EXAMPLES / "queries.txt").read_text(encoding="utf-8").splitlines()
    pairs = list(zip(parity, (EXAMPLES / "corpus.txt").read_text(encoding="utf-8").splitlines()))[::2]
    infos = export_router(out, parity, pairs, max_int8_drop=100.0)
    assert set(infos) == {"sb1", "sb2", "base"}  # served encoders; baselines stay local
    assert all(i["fp32"]["parity_min_cosine"] >= 0.999 for i in infos.values())
    assert_hub_roundtrip(out, "sbr-test/tiny-router", tmp_path, monkeypatch)


TINY_SPACE = Path(__file__).resolve().parents[1] / "training" / "configs" / "tiny-space.toml"


@pytest.fixture(scope="module")
def tiny_space_router(tmp_path_factory, default_router):  # default_router: corpus and base model exist
    cfg = load_build_config(TINY_SPACE)
    cfg.output_dir = str(tmp_path_factory.mktemp("tiny-space") / "router")
    return build_router(cfg), cfg


def test_tiny_space_build_fits_and_records_its_space(tiny_space_router):
    out, cfg = tiny_space_router
    config = json.loads((out / "router_config.json").read_text())
    assert set(config["sprachbund_encoders"].values()) == {"base"} and not (out / "encoders" / "sb1").exists()
    space = config["spaces"]["base"]
    assert (out / space["path"]).is_file() and space["centring"]
    assert space["provenance"]["source"] == "fitted in this build"
    for group, parts in config["sprachbund_parts"].items():
        assert parts["space"][0] == "centring"
        assert group in space["provenance"]["dev"]  # the dev-split scores that chose its map
    report = json.loads((out / "training_report.json").read_text())
    assert set(report["space"]["train_pairs"]) == set(cfg.languages) - {"en"}


def test_tiny_space_router_serves_centred_mapped_vectors_that_win(tiny_space_router):
    from training.corpus import read_pairs
    from training.space import top1_both

    out, _ = tiny_space_router
    router = SprachbundRouter.from_pretrained(out)
    base = router.encoder("base")
    raw, served = [], []
    for lang in ("de", "fr", "ru", "hi"):
        pairs = read_pairs(data_dir() / "corpus", lang, "test")[:150]
        xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
        raw.append(top1_both(base.encode(xs), base.encode(ys)))
        served.append(top1_both(router.encode(xs, lang=lang), router.encode(ys, lang="en")))
    assert np.mean(served) > np.mean(raw), (raw, served)
    # the heads were trained on the served vectors and beat chance
    preds = router.classify(["lachendes Gesicht", "Pizza"], task="emoji-topic")
    assert preds[1].label == "Food & Drink"


def test_rebuilding_an_up_to_date_router_does_nothing(tiny_space_router, caplog):
    out, cfg = tiny_space_router
    before = (out / "router_config.json").stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        build_router(cfg)
    assert (out / "router_config.json").stat().st_mtime_ns == before
    assert "up to date" in caplog.text


def test_a_build_killed_in_the_head_stage_leaves_no_router_and_its_rerun_finishes(tiny_space_router, tmp_path, caplog):
    """Issue 34: the build writes into a staging folder and moves it into place only when the
    heads and the training report are written; a build killed (SIGKILL) inside the head stage
    leaves no router under the output name, and a rerun takes over its lock and finishes."""
    _, cfg = tiny_space_router
    out = tmp_path / "router"
    code = (
        "import os, sys\n"
        "from training import pipeline\n"
        f"cfg = pipeline.load_build_config({str(TINY_SPACE)!r}); cfg.output_dir = {str(out)!r}\n"
        "def killed(*args, **kwargs):\n"
        "    os.kill(os.getpid(), 9)\n"
        "pipeline.train_sprachbund_heads = killed\n"
        "pipeline.build_router(cfg)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not (out / "router_config.json").exists()  # nothing claims to be a router
    staging = tmp_path / ".router.building"
    assert (staging / "router_config.json").is_file() and not (staging / "training_report.json").exists()
    assert (tmp_path / ".router.lock").is_file()
    rerun = dataclasses.replace(cfg, output_dir=str(out))
    with caplog.at_level(logging.INFO):
        assert build_router(rerun) == out
    assert "no longer running" in caplog.text and "resuming the interrupted build" in caplog.text
    config = json.loads((out / "router_config.json").read_text())
    assert config["heads"] and (out / "training_report.json").is_file()
    assert SprachbundRouter.from_pretrained(out).classify(["Pizza"], task="emoji-topic")[0].label
    assert not staging.exists() and not (tmp_path / ".router.lock").exists()


TINY_ADAPTERS = Path(__file__).resolve().parents[1] / "training" / "configs" / "tiny-adapters.toml"


@pytest.fixture(scope="module")
def tiny_adapter_router(tmp_path_factory, default_router):  # default_router: corpus and base model exist
    cfg = load_build_config(TINY_ADAPTERS)
    root = tmp_path_factory.mktemp("tiny-adapters")
    cfg.output_dir, cfg.work_dir = str(root / "router"), str(root / "work")
    return build_router(cfg), cfg


def test_tiny_adapter_build_serves_one_adapter_per_sprachbund(tiny_adapter_router):
    out, cfg = tiny_adapter_router
    config = json.loads((out / "router_config.json").read_text())
    groups = config["sprachbunds"]
    assert config["sprachbund_encoders"] == {g: g for g in groups}
    for g in groups:
        spec = config["encoders"][g]
        assert spec["adapter_base"] == "base" and spec["path"] == f"encoders/{g}"
        files = {p.name for p in (out / "encoders" / g).iterdir()}
        assert files == {"adapter_config.json", "adapter_model.safetensors", "training_metrics.json"}
        assert (out / "encoders" / g / "adapter_model.safetensors").stat().st_size < 3_000_000
    assert "base" in config["spaces"]  # fallback and shared encoder: the base through the space
    # residual adapters: served through the base's own space file, and every sprachbund says so
    assert all(config["spaces"][g]["path"] == config["spaces"]["base"]["path"] for g in groups)
    assert all(config["sprachbund_parts"][g]["adapter_of"] == "base" and config["sprachbund_parts"][g]["space"][0] == "centring"
               for g in groups)
    trained = config["provenance"]["baselines"]["adapters"]["trained"]
    assert set(trained) == set(groups) | {"all"} | set(config["provenance"]["baselines"]["adapters"]["random_groups"])
    report = json.loads((out / "training_report.json").read_text())["adapters"]
    assert report["all"]["steps"] == cfg.adapters.steps * len(groups)  # the same total budget
    assert all(report[g]["steps"] == cfg.adapters.steps for g in groups)

    router = SprachbundRouter.from_pretrained(out)
    texts = ["Die Katze schläft.", "The cat is asleep.", "Кошка спит."]
    routes = router.route(texts)
    vecs = router.encode(texts)
    for text, route, vec in zip(texts, routes, vecs):
        own = router.encoder(route.encoder).encode([text])
        space = router.spaces[route.encoder]
        served = space.serve(own, [route.language], [route.fallback])[0]
        assert route.encoder in groups and np.allclose(vec, served, atol=1e-5)  # adapter vectors through the space
        raw = router.encoder("base").encode([text])[0]
        assert not np.allclose(own[0], raw, atol=1e-4)  # the adapter changed the base
    # what the training pulled back: a residual adapter starts as the base, so the targets of the
    # base's own English vectors are those vectors (the space's inverse is exact on them)
    english = router.encoder("base").encode(["The cat is asleep."])
    served_en = router.spaces["base"].serve(english, ["en"])
    np.testing.assert_allclose(router.spaces["base"].pull_back(served_en, ["en"]), english, atol=1e-4)
    # one space across sprachbunds: translations (de, ru -> en) closer than an unrelated sentence, and
    # each adapter's served vectors near what the shared encoder serves for the same text
    other = router.encode(["Der Zug nach Berlin fährt morgen früh um sieben Uhr ab."])[0]
    assert vecs[0] @ vecs[1] > other @ vecs[1] and vecs[2] @ vecs[1] > other @ vecs[1]
    shared = router.encode_routes(texts, [dataclasses.replace(r, encoder="base") for r in routes])
    assert ((shared * vecs).sum(1) > 0.8).all()
    # the base is stored truncated to the pooled layer (11 of 12), in sentence-transformers' layout; the
    # adapters, trained on all 12 layers, still apply (their layer-11 matrices cannot reach hidden_states[11])
    assert_loads_in_sentence_transformers(router, out / "encoders" / "base", "base", layers=11, truncated_from=12)


def test_tiny_adapter_build_resumes_trained_adapters(tiny_adapter_router, caplog):
    out, cfg = tiny_adapter_router
    (out / "router_config.json").unlink()
    with caplog.at_level(logging.INFO, logger="training"):
        build_router(cfg)
    assert caplog.text.count("is already trained") >= 3
    assert (out / "router_config.json").is_file()


def test_tiny_adapter_router_exports_small_adapter_repos(tiny_adapter_router, tmp_path, monkeypatch):
    """`sbr export hub` of an adapter router: one small LoRA repo per sprachbund on top of the base's
    repo. Loaded back by repo id (offline, from a Hub-cache layout) the router serves the same
    vectors, and sentence-transformers (+ peft) loads an adapter repo as the router's adapter encoder."""
    from exporters.hub import plan_export, seed_cache, write_folders

    out, _ = tiny_adapter_router
    router = SprachbundRouter.from_pretrained(out)
    groups = list(router.config.sprachbunds)
    plan = plan_export(out, "org", "tiny", dry_run=True)
    assert {plan.encoder_repos[g] for g in groups} == set(plan.adapter_bases)
    assert set(plan.adapter_bases.values()) == {plan.encoder_repos["base"]}
    folders = write_folders(plan, tmp_path / "dry")
    for g in groups:
        folder = folders[plan.encoder_repos[g]]
        cfg = json.loads((folder / "adapter_config.json").read_text())
        assert cfg["base_model_name_or_path"] == "org/tiny-base"
        assert (folder / "adapter_model.safetensors").stat().st_size < 3_000_000
        assert {"modules.json", "sentence_bert_config.json", "tokenizer.json", "README.md"} <= {p.name for p in folder.iterdir()}
        keys = load_file(str(folder / "adapter_model.safetensors")).keys()
        assert keys and not any(".layer.11." in k for k in keys)  # the base keeps 11 layers: nothing unexpected
        card = (folder / "README.md").read_text()  # residual adapters: the card says the space comes after them
        assert "under the router's vector space" in card and "passes them through its vector space" in card
    seed_cache(tmp_path / "dry", tmp_path / "hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub = SprachbundRouter.from_pretrained("org/tiny", cache_dir=tmp_path / "hub")
    texts = ["Die Katze schläft auf dem Sofa.", "Кошка спит на диване.", "बिल्ली सोफे पर सो रही है।"]
    assert [r.encoder for r in hub.route(texts)] == [r.encoder for r in router.route(texts)]
    np.testing.assert_allclose(hub.encode(texts), router.encode(texts), atol=1e-5)
    g = router.route(texts)[0].encoder
    code = (f"import json; from sentence_transformers import SentenceTransformer\n"
            f"m = SentenceTransformer({plan.encoder_repos[g]!r}, device='cpu')\n"
            f"print(json.dumps(m.encode({texts!r}).tolist()))")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    got, want = np.array(json.loads(res.stdout.strip().splitlines()[-1])), router.encoder(g).encode(texts)
    assert np.min((got * want).sum(1)) >= 0.9999
