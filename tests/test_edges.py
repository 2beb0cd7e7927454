"""What users tripped on (issue 33, items 6-9, 11, 14, 16): damaged configs and indexes, inputs
that are not texts, outputs that cannot be written, missing extras, CLI details. Each case ends
in one line naming the problem, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sprachbund_router import SprachbundRouter
from sprachbund_router.batch_encoder import BatchEncoder
from sprachbund_router.config import RouterConfig
from sprachbund_router.errors import CheckpointError, InvalidInputError

LINES = ["Die Katze schläft auf dem Sofa.", "Кошка спит на диване.", "The cat sleeps on the sofa."]


def _sbr(*args: str, stdout=subprocess.PIPE, stdin=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sprachbund_router", *args], stdout=stdout, stderr=subprocess.PIPE,
                          stdin=stdin, text=True, timeout=300)


def _one_line_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr[-2000:]
    for w in words:
        assert w in proc.stderr, (w, proc.stderr[-2000:])


# ------------------------------------------------------------------------------ item 9: inputs
def test_inputs_that_are_not_texts_are_named(toy_router):
    enc = BatchEncoder(str(toy_router.directory))
    with pytest.raises(InvalidInputError, match="column of texts"):
        enc({"text": None})
    with pytest.raises(InvalidInputError, match="column of texts.*bytes"):
        enc({"text": b"Die Katze"})
    with pytest.raises(InvalidInputError, match=r"\[0\] is bytes"):
        enc({"text": [b"Die Katze"]})
    with pytest.raises(InvalidInputError, match="no column 'text'"):
        enc({"sentence": ["Die Katze"]})
    with pytest.raises(InvalidInputError, match="mapping"):
        toy_router.encode({"a": 1})
    assert enc({"text": np.array(LINES)})["embedding"].shape[0] == 3


# ------------------------------------------------------------------------------ items 8, 11: damaged files
def _copy(src: Path, tmp: Path) -> Path:
    dst = tmp / "router"
    shutil.copytree(src, dst)
    return dst


def _edit_config(router: Path, change) -> None:
    cfg = json.loads((router / "router_config.json").read_text())
    change(cfg)
    (router / "router_config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("change, words", [
    (lambda c: c["language_id"].setdefault("calibration", {}).update(x=float("nan")), r"language_id\.calibration\.x .*nan"),
    (lambda c: c["provenance"].update(score=float("inf")), r"provenance\.score .*inf"),
    (lambda c: c["heads"].update({"emoji": {"sb9": "heads/x"}}), "unknown sprachbund"),
    (lambda c: c.update(pivots={next(iter(c["sprachbunds"])): "xx"}), "pivots"),
])
def test_a_damaged_config_is_refused_by_name(toy_router_dir, tmp_path, change, words):
    router = _copy(toy_router_dir, tmp_path)
    _edit_config(router, change)
    with pytest.raises(CheckpointError, match=words):
        RouterConfig.load(router)


def _index(router_dir: Path, tmp: Path) -> Path:
    from sprachbund_router.indexing import build_disk_index

    router = SprachbundRouter.from_pretrained(router_dir)
    return build_disk_index(router, lambda: iter([LINES]), tmp / "idx", ann="exact")


@pytest.mark.parametrize("change, words", [
    (lambda m: m.update(identity="x"), "identity"),
    (lambda m: m.update(encoder=["base"]), "encoder"),
    (lambda m: m.update(search="hnsw"), "hnsw"),
    (lambda m: m.update(size=float("nan")), "size must be a finite number"),
])
def test_a_damaged_index_json_with_consistent_checksums_is_one_error(toy_router_dir, tmp_path, change, words):
    from sprachbund_router.disk_index import DiskIndex

    idx = _index(toy_router_dir, tmp_path)
    meta = json.loads((idx / "index.json").read_text())
    change(meta)
    (idx / "index.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=words):
        DiskIndex.load(idx)


@pytest.mark.parametrize("content", [b"not json\n", b"\xff\xfe\n"])
def test_index_texts_that_are_not_json_strings_are_one_error(toy_router_dir, tmp_path, content):
    import hashlib

    from sprachbund_router.disk_index import DiskIndex

    idx = _index(toy_router_dir, tmp_path)
    (idx / "texts.jsonl").write_bytes(content * 3)
    meta = json.loads((idx / "index.json").read_text())
    meta["sha256"]["texts.jsonl"] = hashlib.sha256(content * 3).hexdigest()  # consistent checksums
    (idx / "index.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="texts.jsonl is corrupt"):
        DiskIndex.load(idx)


# ------------------------------------------------------------------------------ items 7, 16: the CLI's outputs
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_output_device_is_one_line(toy_router_dir, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(LINES) + "\n")
    with open("/dev/full", "w") as full:
        _one_line_error(_sbr("identify", str(src), "-m", str(toy_router_dir), stdout=full), "cannot write the output")
        # the JSON list's "[" is written first: inside the error handling too
        _one_line_error(_sbr("identify", str(src), "-m", str(toy_router_dir), "--format", "json", stdout=full),
                        "cannot write the output")
    _one_line_error(_sbr("encode", str(src), "-m", str(toy_router_dir), "-o", "/dev/full"), "cannot write the output")


@pytest.mark.parametrize("where, code", [("sprachbund_router.staging.WriterLock.acquire", "EROFS"),
                                         ("sprachbund_router.disk_index.NpyWriter.append", "ENOSPC")])
def test_index_build_into_a_read_only_or_full_target_is_one_line(toy_router_dir, tmp_path, monkeypatch, where, code):
    import errno

    from typer.testing import CliRunner

    from sprachbund_router.cli import app

    def refuse(*args, **kwargs):  # what the kernel says for a read-only mount or a full disk
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))

    monkeypatch.setattr(where, refuse)
    src = tmp_path / "in.txt"
    src.write_text("\n".join(LINES) + "\n")
    res = CliRunner().invoke(app, ["index", "build", str(src), "-m", str(toy_router_dir), "-o", str(tmp_path / "idx"),
                                   "--ann", "exact"])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
    assert "cannot write the output" in res.output and os.strerror(getattr(errno, code)) in res.output
    assert "Traceback" not in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]  # no index, no partial folder, no lock


def test_output_dash_is_refused_and_fifo_input_is_read(toy_router_dir, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(LINES) + "\n")
    proc = _sbr("encode", str(src), "-m", str(toy_router_dir), "-o", "-")
    assert proc.returncode == 2 and "'-'" in proc.stderr and not (Path.cwd() / "-").exists()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", f"cat {src} > {fifo}"])
    proc = _sbr("identify", str(fifo), "-m", str(toy_router_dir))
    writer.wait(30)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(proc.stdout.strip().splitlines()) == 1 + len(LINES)  # the header and one row per line


def test_python_dash_m_runs_the_cli_and_flags_show_no_bool_metavar():
    proc = _sbr("encode", "--help")
    assert proc.returncode == 0 and "--output" in proc.stdout
    verbose = next(line for line in proc.stdout.splitlines() if "--verbose" in line)
    assert "<bool>" not in verbose
    from typer.testing import CliRunner

    from sprachbund_router.cli import app

    commands = [[], ["train"], ["eval"], ["export"], ["index"], ["encode"], ["identify"], ["retrieve"],
                ["classify"], ["setup"], ["train", "build"], ["train", "head"], ["train", "corpus"],
                ["eval", "retrieval"], ["eval", "classify"], ["eval", "langid"], ["export", "onnx"],
                ["export", "hub"], ["index", "build"]]
    for command in commands:  # typer's own --help flag included
        res = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "160"})
        assert res.exit_code == 0 and "Show this message" in res.output, command
        assert "<bool>" not in res.output, command


def test_index_build_refuses_missing_faiss_before_encoding(toy_router_dir, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from sprachbund_router.cli import app

    src = tmp_path / "in.txt"
    src.write_text("\n".join(LINES) + "\n")
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss raises ImportError
    res = CliRunner().invoke(app, ["index", "build", str(src), "-m", str(toy_router_dir), "-o", str(tmp_path / "i"),
                                   "--ann", "faiss"])
    assert res.exit_code == 2 and "sprachbund-router[index]" in res.output
    assert not (tmp_path / "i").exists() and not list(tmp_path.glob(".i.*"))


def test_onnx_export_refuses_a_missing_extra_before_any_work(monkeypatch):
    from exporters.onnx import require_export_extra

    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(CheckpointError, match=r"sprachbund-router\[export\]"):
        require_export_extra()


# ------------------------------------------------------------------------------ item 10: mixed scripts
def test_a_short_run_of_another_script_does_not_decide_the_language(default_router):
    routes = default_router.route(["Please open the menu. Спасибо!", "Привет Hello world this is English mostly",
                                   "Сохранить файл в формате PDF", "Hello Привет 你好 مرحبا"])
    assert [(r.language, r.fallback) for r in routes[:3]] == [("en", False), ("en", False), ("ru", False)]
    mixed = routes[3]  # no script holds most letters: a fallback that names no language
    assert mixed.fallback and mixed.language is None and mixed.confidence == 0.0 and "mixed scripts" in mixed.reason


# ------------------------------------------------------------------------------ item 6: optional files of a Hub export
@pytest.mark.parametrize("rel, content, words", [
    ("eval/retrieval.json", b"not json", "eval/retrieval.json is corrupt"),
    ("eval/retrieval.json", b'{"no_pairs": []}', "unexpected layout"),
    ("analysis/analysis.json", b"\x00garbage", "analysis.json is corrupt"),
    ("training_report.json", b"\xff\xfe not utf-8", "training_report.json is corrupt"),
    ("training_report.json", b"[1, 2]", "expected a JSON object"),
    ("encoders/west/onnx/export.json", b"{garbage", "export.json is corrupt"),
])
def test_a_damaged_optional_file_stops_a_hub_dry_run_with_one_line(toy_router_dir, tmp_path, rel, content, words):
    from exporters.hub import ExportError, plan_export, write_folders

    router = _copy(toy_router_dir, tmp_path)
    (router / rel).parent.mkdir(parents=True, exist_ok=True)
    (router / rel).write_bytes(content)
    with pytest.raises(ExportError, match=words) as err:
        write_folders(plan_export(router, "org", "router", dry_run=True), tmp_path / "dry")
    assert "\n" not in str(err.value) and ("fix" in str(err.value))
    assert not (tmp_path / "dry").exists() or not any((tmp_path / "dry").iterdir())


# ------------------------------------------------------------------------------ item 13: FAISS and margin scoring
def test_margin_scoring_on_a_faiss_index_ranks_faiss_candidates_like_the_exact_margin(tmp_path):
    """Margin on an index with FAISS takes its candidates from FAISS (nprobe matters) and agrees with
    the exact margin where FAISS finds the neighbours; the nprobe floor covers every list of a small index."""
    pytest.importorskip("faiss")
    from sprachbund_router.disk_index import NPROBE_FLOOR, DiskIndex, DiskIndexWriter
    from sprachbund_router.index import top_k_margin

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 32))
    corpus = centres[rng.integers(0, 40, size=4000)] + 0.3 * rng.normal(size=(4000, 32))
    corpus = (corpus / np.linalg.norm(corpus, axis=1, keepdims=True)).astype(np.float32)
    queries = corpus[:200] + 0.05 * rng.normal(size=(200, 32)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    writer = DiskIndexWriter(tmp_path / "idx")
    writer.append(corpus, [f"t{i}" for i in range(len(corpus))])
    writer.finish("base", {}, ann="faiss", nlist=16)
    index = DiskIndex.load(tmp_path / "idx")
    assert index.ann.nprobe == min(16, NPROBE_FLOOR)
    exact_i, exact_s = top_k_margin(queries, corpus, 5)
    ann_i, ann_s = index.search(queries, 5, scoring="margin")
    assert (ann_i[:, 0] == exact_i[:, 0]).mean() >= 0.95
    agree = ann_i[:, 0] == exact_i[:, 0]
    np.testing.assert_allclose(ann_s[agree, 0], exact_s[agree, 0], rtol=0.05)
    index.ann.nprobe = 16  # every list: the shortlists are exact, so is the ranking's top
    full_i, _ = index.search(queries, 5, scoring="margin")
    assert (full_i[:, 0] == exact_i[:, 0]).mean() >= 0.99
    small = DiskIndexWriter(tmp_path / "small")
    small.append(corpus[:400], [f"t{i}" for i in range(400)])
    small.finish("base", {}, ann="faiss", nlist=7)
    assert DiskIndex.load(tmp_path / "small").ann.nprobe == 7  # 1 of 7 lists recalled 0.69 at 5


# ------------------------------------------------------------------------------ item 15: a dry run, used on its own
def test_a_hub_dry_run_is_usable_offline_and_its_card_snippet_runs_as_written(tmp_path):
    from exporters.hub import REPOS_FILE, plan_export, seed_cache, write_folders
    from tests.toy import write_toy_space_router

    toy_router_dir = write_toy_space_router(tmp_path / "src")
    dry = tmp_path / "dry"
    write_folders(plan_export(toy_router_dir, "org", "router", dry_run=True), dry)
    repos = json.loads((dry / REPOS_FILE).read_text())
    want = SprachbundRouter.from_pretrained(toy_router_dir).encode(LINES)
    # the router folder alone names its encoders by repo id: the caller maps them to the dry-run folders
    with pytest.raises(CheckpointError, match="no encoder of this router"):
        SprachbundRouter.from_pretrained(dry / repos["org/router"], encoder_paths={"org/other": dry})
    local = {repo: dry / rel for repo, rel in repos.items() if repo != "org/router"}
    got = SprachbundRouter.from_pretrained(dry / repos["org/router"], encoder_paths=local, local_files_only=True).encode(LINES)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # the encoder card's apply_space block, as written, offline from the dry run laid out as the Hub cache
    seed_cache(dry, tmp_path / "hub")
    shared = next(repo for repo in repos if repo != "org/router" and "apply_space" in (dry / repos[repo] / "README.md").read_text())
    card = (dry / repos[shared] / "README.md").read_text()
    head, tail = card.split("served = router.apply_space", 1)
    block = head.rsplit("```python\n", 1)[1] + "served = router.apply_space" + tail.split("```", 1)[0]
    script = block + "\nimport json, sys\njson.dump(router.encode(texts).tolist(), sys.stdout)\n" \
        "print(); json.dump(served.tolist(), sys.stdout)\n"
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    encoded, served = (np.array(json.loads(line)) for line in proc.stdout.strip().splitlines()[-2:])
    np.testing.assert_allclose(served, encoded, atol=1e-5)


def test_apply_space_with_routes_gives_fallback_texts_the_fallback_path(tmp_path):
    from tests.toy import write_toy_space_router

    toy_router = SprachbundRouter.from_pretrained(write_toy_space_router(tmp_path / "src"))
    texts = ["Die Katze schläft auf dem Sofa.", "12345 !!!"]  # the second has no letters: it falls back
    routes = toy_router.route(texts)
    assert routes[1].fallback
    raw = toy_router.encoder(toy_router.config.shared_encoder).encode(texts)
    got = toy_router.apply_space(raw, routes=routes)
    space = toy_router.spaces[toy_router.config.shared_encoder]
    np.testing.assert_allclose(got, space.serve(raw, [r.language for r in routes], [False, True]), atol=1e-6)
    with pytest.raises(ValueError, match="not both"):
        toy_router.apply_space(raw, "de", routes=routes)
