"""ONNX export and Hub export: parity, the torch-free backend, dry-run folders that load offline."""

import json
import logging
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from exporters.hub import ExportError, plan_export, seed_cache, write_folders
from exporters.onnx import INT8_PLANS, export_router
from sprachbund_router import CheckpointError, SprachbundRouter
from tests.conftest import assert_hub_roundtrip

TEXTS = ["Die Katze sitzt auf der Matte", "Кошка сидит на коврике", "the cat sits on the mat", "猫 坐 在 垫子 上", "der hund"]
PAIRS = [("die katze", "the cat"), ("der hund", "the dog"), ("das haus", "the house"), ("rot", "red")]


@pytest.fixture(scope="module")
def exported_toy(tmp_path_factory, toy_router_dir):
    d = tmp_path_factory.mktemp("toy-onnx") / "router"
    shutil.copytree(toy_router_dir, d)
    infos = export_router(d, TEXTS, PAIRS, max_int8_drop=100.0)
    return d, infos


def test_onnx_export_parity_and_files(exported_toy):
    d, infos = exported_toy
    assert set(infos) == {"west", "east", "shared"}
    for info in infos.values():
        assert info["fp32"]["parity_min_cosine"] >= 0.999
        assert info["layer_resolved"] == 2 and info["mode"] == "mean"
        assert "file" in info["int8"] and info["int8"]["plan"] == INT8_PLANS[0][0]
        check = info["int8_check"]
        assert check["split"] == "dev" and check["plans_tried"][0]["sources"]["pairs"]["languages"] == 1
    for name in ("west", "east", "shared"):
        assert (d / "encoders" / name / "onnx" / "model_pooled.onnx").is_file()
        assert (d / "encoders" / name / "onnx" / "model_pooled_qint8.onnx").is_file()
        assert not (d / "encoders" / name / "onnx" / "model.onnx").exists()  # sentence-transformers' name: not ours


def test_onnx_backend_matches_torch(exported_toy):
    d, _ = exported_toy
    torch_router = SprachbundRouter.from_pretrained(d, backend="torch")
    onnx_router = SprachbundRouter.from_pretrained(d, backend="onnx")
    a, b = torch_router.encode(TEXTS), onnx_router.encode(TEXTS)
    assert a.shape == b.shape and (a * b).sum(axis=1).min() > 0.999
    q = SprachbundRouter.from_pretrained(d, backend="onnx-int8").encode(TEXTS)
    assert q.shape == a.shape and np.isfinite(q).all()


def test_onnx_backend_runs_without_torch(exported_toy):
    d, _ = exported_toy
    code = f"""
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch.") or name == "transformers" or name.startswith("transformers."):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
from sprachbund_router import SprachbundRouter
r = SprachbundRouter.from_pretrained({str(d)!r})  # auto: the exported graphs passed, so no torch
assert r.backend in ("onnx", "onnx-int8"), r.backend
res = r.retrieve(["Die Katze sitzt"], ["the cat sits on the mat", "the dog runs"])
routes = r.route(["Die Katze sitzt", "Привет"])
preds = r.classify(["Die Katze sitzt"], task=sorted(r.config.heads)[0]) if r.config.heads else []
assert "torch" not in sys.modules and "transformers" not in sys.modules
print("ok", res[0].encoder, r.encode(["der hund"]).shape, len(routes), len(preds))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("ok ") and "(1, 32)" in out.stdout


def test_auto_backend_serves_checked_graphs_only(exported_toy, toy_router_dir, tmp_path, monkeypatch):
    from sprachbund_router import cpu

    d, _ = exported_toy
    assert SprachbundRouter.from_pretrained(toy_router_dir).backend == "torch"  # no graphs
    monkeypatch.setattr(cpu, "fast_int8", lambda: False)
    assert SprachbundRouter.from_pretrained(d).backend == "onnx"
    monkeypatch.setattr(cpu, "fast_int8", lambda: True)
    assert SprachbundRouter.from_pretrained(d, device="cuda:0").backend == "torch"
    assert SprachbundRouter.from_pretrained(d, backend="torch").backend == "torch"
    copy = tmp_path / "r"
    shutil.copytree(d, copy)
    infos = {p: json.loads(p.read_text()) for p in copy.glob("encoders/*/onnx/export.json")}
    assert all(i["int8"]["resolved"] for i in infos.values())  # the toy's int8 passed its check (bound 100)
    for path, i in infos.items():  # int8 within the fp32 bound on every encoder: auto serves it
        path.write_text(json.dumps({**i, "int8": {**i["int8"], "max_drop": 0.05}}))
    assert SprachbundRouter.from_pretrained(copy).backend == "onnx-int8"
    info_file = copy / "encoders" / "east" / "onnx" / "export.json"
    info = json.loads(info_file.read_text())
    info["int8"] = {**info["int8"], "max_drop": 0.3}
    info_file.write_text(json.dumps(info))
    assert SprachbundRouter.from_pretrained(copy).backend == "onnx"  # passed at 0.5, but loses more than fp32 may
    assert SprachbundRouter.from_pretrained(copy, backend="onnx-int8").backend == "onnx-int8"  # asked for: served
    info["int8"] = {**info["int8"], "max_drop": 0.0, "resolved": False}
    info_file.write_text(json.dumps(info))
    assert SprachbundRouter.from_pretrained(copy).backend == "onnx"  # a check that resolved nothing
    info["int8"] = {"refused": "lost 2 points"}
    info_file.write_text(json.dumps(info))
    assert SprachbundRouter.from_pretrained(copy).backend == "onnx"  # one encoder's int8 failed: fp32 for all
    info["fp32"]["parity_min_cosine"] = 0.99
    info_file.write_text(json.dumps(info))
    assert SprachbundRouter.from_pretrained(copy).backend == "torch"  # parity below the bound
    info["fp32"]["parity_min_cosine"] = 1.0
    info_file.write_text(json.dumps(info))
    assert SprachbundRouter.from_pretrained(copy).backend == "onnx"
    (copy / "encoders" / "west" / "onnx" / "token_embeddings.safetensors").unlink()
    assert SprachbundRouter.from_pretrained(copy).backend == "torch"  # a graph without its table


def test_onnx_backend_without_export_fails_clearly(toy_router_dir):
    with pytest.raises(CheckpointError, match="sbr export onnx"):
        SprachbundRouter.from_pretrained(toy_router_dir, backend="onnx")


def test_hub_dry_run_loads_offline_with_both_backends(exported_toy, tmp_path, monkeypatch):
    d, _ = exported_toy
    plan = plan_export(d, "someorg", "toy-router", dry_run=True)
    assert plan.encoder_repos == {"east": "someorg/toy-router-east", "shared": "someorg/toy-router-shared",
                                  "west": "someorg/toy-router-west"}
    folders = write_folders(plan, tmp_path / "out")
    router_folder = folders["someorg/toy-router"]
    cfg = json.loads((router_folder / "router_config.json").read_text())
    assert cfg["encoders"]["west"]["repo_id"] == "someorg/toy-router-west" and cfg["encoders"]["west"]["path"] is None
    card = (folders["someorg/toy-router-west"] / "README.md").read_text()
    assert card.startswith("---\n") and "base_model:" in card and "pipeline_tag: feature-extraction" in card
    assert "parity with PyTorch" in card and "de" in card
    check = json.loads((d / "encoders" / "west" / "onnx" / "export.json").read_text())["int8_check"]["plans_tried"][-1]
    assert f"loses {check['mean_drop']} points on average and {check['max_drop']} at worst" in card  # read from export.json
    # each of the card's snippets runs as written (repo files from the Hub cache) and gives the router's vector
    seed_cache(tmp_path / "out", tmp_path / "hub")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    want = SprachbundRouter.from_pretrained(d, backend="onnx").encoder("west").encode(["Die Katze schläft."])
    for section, var in (("With sentence-transformers", "vectors[0]"), ("Alone, with transformers", "vector[0].detach()"),
                         ("With onnxruntime only", "vector[0]")):
        snippet = card.split(section)[1].split("```python\n")[1].split("```")[0]
        code = snippet + f"\nimport json; print(json.dumps([float(x) for x in {var}]))"
        out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, (section, out.stderr[-2000:])
        vector = np.array(json.loads(out.stdout.strip().splitlines()[-1]))
        assert vector.shape == want[0].shape and float((vector * want[0]).sum()) > 0.999, section
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = SprachbundRouter.from_pretrained(d)
    for backend in ("torch", "onnx"):
        hub = SprachbundRouter.from_pretrained("someorg/toy-router", backend=backend, cache_dir=tmp_path / "hub")
        assert "snapshots" in str(hub.directory)
        got, want = hub.encode(TEXTS), source.encode(TEXTS)
        assert (got * want).sum(axis=1).min() > 0.999


def test_hub_export_refuses_bad_input(tmp_path, exported_toy, monkeypatch):
    d, _ = exported_toy
    with pytest.raises(ExportError, match="not a router directory"):
        plan_export(tmp_path, "someorg", dry_run=True)
    with pytest.raises(ExportError, match="invalid Hub repo name"):
        plan_export(d, "bad org!", "x", dry_run=True)
    monkeypatch.setenv("HF_TOKEN", "")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "nohome"))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_TOKEN_PATH", str(tmp_path / "nohome" / "token"))
    with pytest.raises(ExportError, match="no Hugging Face token"):
        plan_export(d, "someorg", "x", dry_run=False)


def test_default_router_export_roundtrip(default_router, tmp_path, monkeypatch):
    """Embedded default: ONNX export, Hub dry-run, and the same top-1 on the bundled example."""
    from tests.conftest import EXAMPLES

    d = default_router.directory
    info_file = d / "encoders" / "base" / "onnx" / "export.json"
    if not (d / "encoders" / "base" / "onnx" / "model_pooled.onnx").is_file():  # missing, or exported under the old name
        parity = (EXAMPLES / "queries.txt").read_text(encoding="utf-8").splitlines()
        export_router(d, parity, list(zip(parity, (EXAMPLES / "corpus.txt").read_text(encoding="utf-8").splitlines())))
    info = json.loads(info_file.read_text())
    assert info["fp32"]["parity_min_cosine"] >= 0.999
    assert_hub_roundtrip(d, "sbr-test/default-router", tmp_path, monkeypatch)
    # the router card carries the build's measured results, read from training_report.json (shipped beside it)
    card = (tmp_path / "dry" / "default-router" / "README.md").read_text()
    report = json.loads((tmp_path / "dry" / "default-router" / "training_report.json").read_text())
    assert "## Measured when this router was built" in card and "model-index" in card
    r = report["routing"]["by_length"]["sentence"]  # the served rule for sentences
    assert f"| sentence | `{r['backend']}` @ {r['threshold']} | {r['right']} | {r['wrong']} | {r['fallback']} |" in card
    every = report["heads"]["emoji-topic:every"]
    assert f"| every | {100 * every['sb1']['mean']:.1f} |" in card
    assert "test accuracy, every setting, mean over sprachbunds" in card and "### Vector space" in card
    assert "leave one source out" in card.split("### Vector space")[1] and "| the router |" in card
    # model-index: the router's out-of-source figures, read from the same report
    loso = report["space"]["loso"]
    assert "name: mean top-1, interface sources" in card
    assert f"value: {loso['interface_top1']['router']}" in card
    assert "sprachbund-router-held-out-sources" in card
    for source in loso.get("per_source", {}):
        assert f"config: {source}\n" in card, source


def test_refused_int8_variant_is_explained(tmp_path, toy_router_dir, monkeypatch):
    import training.source_eval as source_eval

    d = tmp_path / "r"
    shutil.copytree(toy_router_dir, d)
    real = source_eval.compare

    def losing(reference, other):  # every plan loses 5 points, resolved (standard error 0 on many rows)
        out = real(reference, other)
        return {**out, "sources": {s: {**r, "drop": 5.0, "drop_se": 0.0, "rows": 10_000} for s, r in out["sources"].items()},
                "max_drop": 5.0}

    monkeypatch.setattr(source_eval, "compare", losing)
    export_router(d, TEXTS, PAIRS, max_int8_drop=0.5)
    info = json.loads((d / "encoders" / "west" / "onnx" / "export.json").read_text())
    assert "refused" in info["int8"] and not (d / "encoders" / "west" / "onnx" / "model_pooled_qint8.onnx").exists()
    assert [t["plan"] for t in info["int8_check"]["plans_tried"]] == [name for name, _ in INT8_PLANS]  # every plan tried
    with pytest.raises(CheckpointError, match="refused at export"):
        SprachbundRouter.from_pretrained(d, backend="onnx-int8")
    assert SprachbundRouter.from_pretrained(d, backend="onnx").encode(TEXTS).shape == (len(TEXTS), 32)


def test_onnx_session_leaves_slow_fusions_off(exported_toy, tmp_path):
    """The export does not bake SkipLayerNormalization/BiasGelu in, and onnxruntime honours the
    names in SLOW_CPU_FUSIONS (with them on, the same graph gets one of them)."""
    import onnx
    import onnxruntime as ort

    from sprachbund_router.onnx_encoder import SLOW_CPU_FUSIONS

    d, infos = exported_toy
    for info in infos.values():
        assert not {"SkipLayerNormalization", "BiasGelu"} & set(info["fused_operators"])
    ops = {}
    for label, disabled in (("off", list(SLOW_CPU_FUSIONS)), ("on", [])):
        opts = ort.SessionOptions()
        opts.optimized_model_filepath = str(tmp_path / f"{label}.onnx")
        ort.InferenceSession(str(d / "encoders" / "west" / "onnx" / "model_pooled.onnx"), opts,
                             providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
        ops[label] = {n.op_type for n in onnx.load(str(tmp_path / f"{label}.onnx")).graph.node}
    assert {"SkipLayerNormalization", "BiasGelu"} & ops["on"]
    assert not {"SkipLayerNormalization", "BiasGelu"} & ops["off"]


def test_onnx_vectors_do_not_depend_on_batching(exported_toy, monkeypatch):
    from sprachbund_router import batching

    d, _ = exported_toy
    router = SprachbundRouter.from_pretrained(d, backend="onnx")
    enc = router.encoder(router.config.shared_encoder)
    texts = [("Katze " * (i % 7 + 1)).strip() + f" {i}" for i in range(23)] + TEXTS
    one_by_one = np.stack([enc.encode([t])[0] for t in texts])
    monkeypatch.setattr(batching, "SORT_WINDOW", 8)
    np.testing.assert_allclose(enc.encode(texts, batch_size=3), one_by_one, atol=1e-5)


def test_pre_rename_onnx_files_still_load_and_are_published_under_the_new_name(exported_toy, tmp_path, caplog):
    """Routers exported before the pooled graphs were renamed still run (with a warning), and a Hub
    export never publishes a pooled graph as `onnx/model.onnx` (sentence-transformers' token-level name)."""
    d = tmp_path / "old"
    shutil.copytree(exported_toy[0], d)
    for enc in ("west", "east", "shared"):
        onnx = d / "encoders" / enc / "onnx"
        (onnx / "model_pooled.onnx").rename(onnx / "model.onnx")
        (onnx / "model_pooled_qint8.onnx").rename(onnx / "model_qint8.onnx")
    want = SprachbundRouter.from_pretrained(exported_toy[0], backend="onnx").encode(["der hund", "the cat"])
    with caplog.at_level(logging.WARNING):
        got = SprachbundRouter.from_pretrained(d, backend="onnx").encode(["der hund", "the cat"])
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert "re-export" in caplog.text
    folders = write_folders(plan_export(d, "someorg", "old", dry_run=True), tmp_path / "dry")
    onnx = folders["someorg/old-west"] / "onnx"
    assert (onnx / "model_pooled.onnx").is_file() and not (onnx / "model.onnx").exists()


def test_encoder_card_shows_the_onnx_snippet_only_with_onnx_files_and_the_space_recipe(toy_router_dir):
    from hub_cards.cards import encoder_card
    from sprachbund_router.config import RouterConfig
    from tests.toy import write_toy_space_router

    cfg = RouterConfig.load(toy_router_dir)
    card = str(encoder_card("org/toy-west", "west", cfg, "org/toy", languages=["de"]))
    assert "onnxruntime only" not in card and "No ONNX export yet" in card
    info = {"fp32": {"parity_min_cosine": 1.0, "parity_texts": 8}, "layer_resolved": 2, "mode": "mean", "int8": {}}
    with_onnx = str(encoder_card("org/toy-west", "west", cfg, "org/toy", languages=["de"], onnx_info=info))
    assert "onnxruntime only" in with_onnx
    import tempfile
    from pathlib import Path

    space_cfg = RouterConfig.load(write_toy_space_router(Path(tempfile.mkdtemp())))
    shared = space_cfg.shared_encoder
    assert "router.apply_space(model.encode(texts), routes=router.route(texts))" in str(
        encoder_card("org/toy-shared", shared, space_cfg, "org/toy", languages=["de"]))


def test_int8_keeps_the_first_plan_within_the_bound(exported_toy, monkeypatch):
    """Plans are tried in order: the first whose worst set drop is within the bound is kept, and
    its int8 file has exactly that plan's nodes in fp32."""
    import onnx

    import training.source_eval as source_eval
    from exporters.onnx import fp32_nodes, settle_int8

    d, _ = exported_toy
    drops = iter([0.9, 0.3, 0.0])
    real = source_eval.compare

    def fake_compare(reference, other):  # a check that resolves the bound: many rows, small errors
        out = real(reference, other)
        drop = next(drops)
        return {**out, "sources": {s: {**r, "drop": drop, "drop_se": 0.1, "rows": 10_000} for s, r in out["sources"].items()},
                "max_drop": drop}

    monkeypatch.setattr(source_eval, "compare", fake_compare)
    dirs = [d / "encoders" / name for name in ("west", "east", "shared")]
    outcome = settle_int8(d, dirs, [("die katze", "the cat"), ("der hund", "the dog")], max_int8_drop=0.5)
    assert [t["plan"] for t in outcome["plans_tried"]] == [INT8_PLANS[0][0], INT8_PLANS[1][0]]
    for enc in dirs:
        info = json.loads((enc / "onnx" / "export.json").read_text())
        kept = fp32_nodes(enc / "onnx" / "model_pooled.onnx", INT8_PLANS[1][1])
        assert info["int8"]["plan"] == INT8_PLANS[1][0] and info["int8"]["fp32_nodes"] == kept and kept
        graph = onnx.load(str(enc / "onnx" / "model_pooled_qint8.onnx")).graph
        float_matmuls = {n.name for n in graph.node if n.op_type == "MatMul"}
        assert set(kept) <= float_matmuls  # kept as plain float MatMul, not MatMulInteger


def _result(*sets):
    rows = {f"s{i}": {"drop": drop, "drop_se": se} for i, (drop, se) in enumerate(sets)}
    return {"sources": rows, "max_drop": max(r["drop"] for r in rows.values())}


def test_a_check_too_small_to_resolve_the_bound_never_loosens_a_plan():
    from exporters.onnx import _verdict

    assert _verdict(_result((0.4, 0.1), (0.2, 0.3)), 0.5, recorded=False) == (True, True)  # the worst set decides
    assert _verdict(_result((0.4, 0.3), (0.2, 0.1)), 0.5, recorded=False) == (False, False)
    assert _verdict(_result((0.6, 0.1)), 0.5, recorded=True) == (False, True)  # resolved: the bound decides
    assert _verdict(_result((-0.8, 0.8)), 0.5, recorded=False) == (False, False)  # 120 sentences: verifies nothing
    assert _verdict(_result((0.9, 0.8)), 0.5, recorded=True) == (True, False)  # no significant loss: the record stands
    assert _verdict(_result((2.4, 0.8)), 0.5, recorded=True) == (False, False)  # a significant loss refuses it
    few = {"sources": {"pairs": {"drop": 0.0, "drop_se": 0.0, "rows": 120}}, "max_drop": 0.0}
    assert _verdict(few, 0.5, recorded=False) == (False, False)  # no row changed, but one row is 0.83 points
    many = {"sources": {"dev": {"drop": 0.0, "drop_se": 0.0, "rows": 1500}}, "max_drop": 0.0}
    assert _verdict(many, 0.5, recorded=False) == (True, True)


def test_recorded_plan_is_where_settling_starts(exported_toy, tmp_path, monkeypatch):
    import training.source_eval as source_eval
    from exporters.onnx import recorded_int8_plan, settle_int8
    from sprachbund_router.checkpoint import onnx_unready

    d = tmp_path / "r"
    shutil.copytree(exported_toy[0], d)
    dirs = [d / "encoders" / name for name in ("west", "east", "shared")]
    real = source_eval.compare

    def unresolved(reference, other):  # every set: a drop of 0.8 with a standard error of 0.8
        out = real(reference, other)
        return {**out, "sources": {s: {**r, "drop": 0.8, "drop_se": 0.8} for s, r in out["sources"].items()},
                "max_drop": 0.8}

    monkeypatch.setattr(source_eval, "compare", unresolved)
    pairs = [("die katze", "the cat"), ("der hund", "the dog")]
    outcome = settle_int8(d, dirs, pairs, max_int8_drop=0.5, recorded_plan=INT8_PLANS[2][0])
    assert [t["plan"] for t in outcome["plans_tried"]] == [INT8_PLANS[2][0]]  # nothing looser is tried
    info = json.loads((dirs[0] / "onnx" / "export.json").read_text())
    assert info["int8"]["plan"] == INT8_PLANS[2][0] and "cannot resolve" in info["int8"]["check"]
    assert "not resolved" in onnx_unready(dirs[0], "onnx-int8")  # a recorded plan the check could not fault: kept,
    assert SprachbundRouter.from_pretrained(d, backend="onnx-int8").backend == "onnx-int8"  # served when asked for
    settle_int8(d, dirs, pairs, max_int8_drop=0.5)  # no record: the small check verifies nothing
    info = json.loads((dirs[0] / "onnx" / "export.json").read_text())
    assert "unverified" in info["int8"] and "not verified" in onnx_unready(dirs[0], "onnx-int8")
    assert SprachbundRouter.from_pretrained(d, backend="onnx-int8").backend == "onnx-int8"  # asked for: served
    assert recorded_int8_plan(d) is None
    (d / "build_config.json").write_text(json.dumps({"int8_plan": INT8_PLANS[1][0]}))
    assert recorded_int8_plan(d) == INT8_PLANS[1][0]
    (d / "build_config.json").write_text(json.dumps({"int8_plan": "everything in int4"}))
    with pytest.raises(CheckpointError, match="int8_plan"):
        recorded_int8_plan(d)


def test_a_head_fitted_on_the_onnx_backend_serves_every_backend(exported_toy, tmp_path):
    """Issue 35 on the torch-free path: `fit_head` under ONNX, saved, and reloaded under auto and
    torch classifies the same texts alike (the backends serve the same vectors)."""
    d, _ = exported_toy
    router = SprachbundRouter.from_pretrained(d, backend="onnx")
    words = {"animal": ["cat", "dog", "horse", "cow", "bird", "fish", "mouse", "sheep"],
             "colour": ["red", "blue", "green", "yellow", "black", "white", "purple", "orange"]}
    texts = [f"the {w}" for ws in words.values() for w in ws] + [f"a {w} one" for ws in words.values() for w in ws]
    labels = [label for label, ws in words.items() for _ in ws] * 2
    record = router.fit_head("kind", texts, labels, languages="en", setting="english")
    assert record and all(r["languages"] == ["en"] for r in record.values())
    got = [p.label for p in router.classify(texts, task="kind", lang="en")]
    router.save_pretrained(tmp_path / "saved")
    for backend in ("auto", "torch"):
        again = SprachbundRouter.from_pretrained(tmp_path / "saved", backend=backend)
        assert [p.label for p in again.classify(texts, task="kind", lang="en")] == got, backend
