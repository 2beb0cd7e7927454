"""A router folder is untrusted input: hostile paths, damaged files, odd inputs, threads (issue 12)."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from sprachbund_router import SprachbundRouter
from sprachbund_router.cli import app
from sprachbund_router.cli.io import NpyWriter, iter_line_chunks
from sprachbund_router.config import CONFIG_NAME, LANGUAGE_VECTORS_NAME
from sprachbund_router.errors import CheckpointError
from sprachbund_router.index import VectorIndex
from sprachbund_router.validation import writable_inside
from tests.toy import write_toy_router

runner = CliRunner()


def _flat(res) -> str:
    """Output with rich's box drawing and line wrapping removed."""
    return " ".join(res.output.replace("│", " ").split())


@pytest.fixture()
def router_copy(toy_router_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the toy router to damage."""
    return Path(shutil.copytree(toy_router_dir, tmp_path / "router"))


def _edit(router_dir: Path, change) -> None:
    cfg = json.loads((router_dir / CONFIG_NAME).read_text())
    change(cfg)
    (router_dir / CONFIG_NAME).write_text(json.dumps(cfg))


# ---------------------------------------------------------------- paths stay inside the folder
@pytest.mark.parametrize("bad", ["/etc", "../outside", "~/.ssh", "encoders/../../x", "C:\\x"])
def test_encoder_and_head_paths_outside_the_folder_are_refused(router_copy, bad):
    _edit(router_copy, lambda c: c["encoders"]["west"].__setitem__("path", bad))
    with pytest.raises(CheckpointError, match="encoders.west.path") as err:
        SprachbundRouter.from_pretrained(router_copy)
    assert "passwd" not in str(err.value) and "does not exist" not in str(err.value)
    _edit(router_copy, lambda c: c["encoders"]["west"].__setitem__("path", "encoders/west"))
    _edit(router_copy, lambda c: c.__setitem__("heads", {"t": {"west": bad}}))
    with pytest.raises(CheckpointError, match="heads.t.west"):
        SprachbundRouter.from_pretrained(router_copy)


def test_symlinks_leading_outside_are_refused(router_copy, tmp_path):
    outside = tmp_path / "elsewhere"
    shutil.copytree(router_copy / "encoders" / "west", outside)
    shutil.rmtree(router_copy / "encoders" / "west")
    (router_copy / "encoders" / "west").symlink_to(outside, target_is_directory=True)
    with pytest.raises(CheckpointError, match="encoders.west.path.*outside"):
        SprachbundRouter.from_pretrained(router_copy)
    # a link to a file outside, inside an encoder folder
    (router_copy / "encoders" / "west").unlink()
    shutil.copytree(outside, router_copy / "encoders" / "west")
    (router_copy / "encoders" / "west" / "model.safetensors").unlink()
    (router_copy / "encoders" / "west" / "model.safetensors").symlink_to(outside / "model.safetensors")
    with pytest.raises(CheckpointError, match="model.safetensors.*outside"):
        SprachbundRouter.from_pretrained(router_copy)
    # the config file itself
    (router_copy / "encoders" / "west" / "model.safetensors").unlink()
    shutil.copy(outside / "model.safetensors", router_copy / "encoders" / "west")
    real = tmp_path / "config.json"
    shutil.move(router_copy / CONFIG_NAME, real)
    (router_copy / CONFIG_NAME).symlink_to(real)
    with pytest.raises(CheckpointError, match="outside"):
        SprachbundRouter.from_pretrained(router_copy)


def _hub_layout(router_dir: Path, cache: Path, repo: str) -> Path:
    """Lay a router out as huggingface_hub does: snapshot files are links into the repo's blobs."""
    root = cache / ("models--" + repo.replace("/", "--"))
    snap = root / "snapshots" / ("a" * 40)
    for i, src in enumerate(sorted(p for p in router_dir.rglob("*") if p.is_file())):
        blob = root / "blobs" / f"{i:040d}"
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, blob)
        dst = snap / src.relative_to(router_dir)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(Path("../" * (len(dst.relative_to(root).parts) - 1)) / "blobs" / blob.name)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text("a" * 40)
    return snap


def test_hub_cache_layout_loads_but_cannot_reach_outside(router_copy, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snap = _hub_layout(router_copy, tmp_path / "hub", "org/toy")
    router = SprachbundRouter.from_pretrained("org/toy", cache_dir=tmp_path / "hub")
    assert router.encode(["Die Katze sitzt"]).shape == (1, 32)
    # a link that leaves the repository (another repo's blob, or any file) is refused
    secret = tmp_path / "secret.safetensors"
    shutil.copy(router_copy / "encoders" / "east" / "model.safetensors", secret)
    target = snap / "encoders" / "east" / "model.safetensors"
    target.unlink()
    target.symlink_to(secret)
    with pytest.raises(CheckpointError, match="outside the router directory"):
        SprachbundRouter.from_pretrained("org/toy", cache_dir=tmp_path / "hub")


def test_encoder_repo_id_is_never_read_as_a_local_path(router_copy):
    _edit(router_copy, lambda c: c["encoders"]["west"].update(path=None, repo_id="/etc"))
    with pytest.raises(CheckpointError, match="not a Hub repository id"):  # refused as the config loads (issue 33)
        SprachbundRouter.from_pretrained(router_copy)


def test_writers_refuse_paths_outside_their_target(tmp_path):
    with pytest.raises(CheckpointError, match="'..'"):
        writable_inside(tmp_path, "../../x", "heads.t.g")
    with pytest.raises(CheckpointError, match="relative"):
        writable_inside(tmp_path, "/tmp/x", "heads.t.g")


def test_save_pretrained_stays_inside_target(router_copy, tmp_path):
    router = SprachbundRouter.from_pretrained(router_copy)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    router.config.heads = {"t": {"west": "../victim.txt"}}  # bypassing the config's own checks
    out = tmp_path / "out" / "router"
    with pytest.raises(CheckpointError, match="heads.t.west"):
        router.save_pretrained(out)
    assert victim.read_text() == "keep me"


# ---------------------------------------------------------------- damaged weights never load silently
def test_missing_tensor_is_refused(router_copy):
    weights = router_copy / "encoders" / "west" / "model.safetensors"
    tensors = load_file(weights)
    del tensors["encoder.layer.0.attention.self.query.weight"]
    save_file(tensors, str(weights), metadata={"format": "pt"})
    router = SprachbundRouter.from_pretrained(router_copy)
    with pytest.raises(CheckpointError, match="1 tensor.*missing.*query.weight"):
        router.encode(["Die Katze"], lang="de")


def test_truncated_and_wrong_shape_weights_are_refused(router_copy):
    weights = router_copy / "encoders" / "west" / "model.safetensors"
    original = weights.read_bytes()
    weights.write_bytes(original[: len(original) // 2])
    with pytest.raises(CheckpointError, match="cannot load encoder"):
        SprachbundRouter.from_pretrained(router_copy).encode(["Die Katze"], lang="de")
    tensors = load_file(router_copy / "encoders" / "east" / "model.safetensors")
    tensors["encoder.layer.1.output.dense.weight"] = tensors["encoder.layer.1.output.dense.weight"][:, :10].contiguous()
    save_file(tensors, str(weights), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="west"):
        SprachbundRouter.from_pretrained(router_copy).encode(["Die Katze"], lang="de")


# ---------------------------------------------------------------- typed config
@pytest.mark.parametrize(("change", "key"), [
    (lambda c: c["sprachbunds"].__setitem__("west", "de"), "sprachbunds.west"),
    (lambda c: c.__setitem__("encoders", []), "encoders"),
    (lambda c: c.__setitem__("pooling", [1]), "pooling"),
    (lambda c: c["encoders"]["west"].__setitem__("text_prefix", 7), "text_prefix"),
    (lambda c: c["language_id"].__setitem__("min_confidence", "0.5"), "language_id.min_confidence"),
    (lambda c: c["language_id"].__setitem__("min_confidence", 3), "language_id.min_confidence"),
    (lambda c: c["pooling"].__setitem__("layer", 99), "pooling.layer"),
    (lambda c: c["encoders"]["west"].__setitem__("max_length", 10_000), "max_length"),
])
def test_config_values_are_checked_with_the_key_named(router_copy, change, key):
    _edit(router_copy, change)
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.")):
        SprachbundRouter.from_pretrained(router_copy)


def test_missing_language_vectors_raise(router_copy):
    (router_copy / LANGUAGE_VECTORS_NAME).unlink()
    with pytest.raises(CheckpointError, match=LANGUAGE_VECTORS_NAME):
        SprachbundRouter.from_pretrained(router_copy)


# ---------------------------------------------------------------- indexes
def test_damaged_or_foreign_indexes_are_refused(router_copy, tmp_path):
    router = SprachbundRouter.from_pretrained(router_copy)
    corpus = ["the cat sits on the mat", "the dog runs", "the house is red"]
    index = router.build_index(corpus, lang="en")
    path = index.save(tmp_path / "i.safetensors")
    assert router.retrieve(["Die Katze sitzt"], VectorIndex.load(path), query_lang="de")[0].indices
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x40  # one byte of the vectors
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        VectorIndex.load(path)
    # same encoder name, other pooling
    other_dir = Path(shutil.copytree(router_copy, tmp_path / "other"))
    _edit(other_dir, lambda c: c.__setitem__("pooling", {"layer": 1, "mode": "cls"}))
    other = SprachbundRouter.from_pretrained(other_dir)
    with pytest.raises(CheckpointError, match="pooling"):
        other.retrieve(["Die Katze"], index, query_lang="de")
    # same name and settings, other weights
    shutil.copy(router_copy / "encoders" / "east" / "model.safetensors", other_dir / "encoders" / "west")
    _edit(other_dir, lambda c: c.__setitem__("pooling", {"layer": -1, "mode": "mean"}))
    with pytest.raises(CheckpointError, match="other weights"):
        SprachbundRouter.from_pretrained(other_dir).retrieve(["Die Katze"], index, query_lang="de")
    # an encoder the router lacks
    index.encoder = "nowhere"
    with pytest.raises(CheckpointError, match="lacks"):
        router.retrieve(["Die Katze"], index, query_lang="de")


# ---------------------------------------------------------------- threads
def test_threads_load_each_encoder_once(router_copy, monkeypatch):
    from sprachbund_router import encoder as encoder_module

    calls = []
    real = encoder_module.SentenceEncoder.from_pretrained.__func__

    def counting(cls, *args, **kwargs):
        calls.append(args[0])
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(encoder_module.SentenceEncoder, "from_pretrained", classmethod(counting))
    router = SprachbundRouter.from_pretrained(router_copy)
    errors = []

    def work():
        try:
            router.encode(["Die Katze sitzt", "Дом красный"], lang=["de", "ru"])
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(Path(c).name for c in calls) == ["east", "west"]


# ---------------------------------------------------------------- lines and streaming
def test_only_newlines_split_lines(tmp_path):
    f = tmp_path / "in.txt"
    f.write_bytes("a\x0cb\nc\x1ed\r\ne\x85f\ng\u2028h\n\n".encode())
    chunks = list(iter_line_chunks(f, "input", chunk=3))
    assert chunks == [(1, ["a\x0cb", "c\x1ed", "e\x85f"]), (4, ["g\u2028h"])]


def test_npy_writer_is_valid_after_every_chunk(tmp_path):
    out = tmp_path / "v.bin"
    writer = NpyWriter(out)
    a, b = np.ones((3, 4), np.float32), np.arange(8, dtype=np.float32).reshape(2, 4)
    writer.append(a)
    assert np.array_equal(np.load(out), a)
    writer.append(b)
    writer.close()
    assert np.array_equal(np.load(out), np.vstack([a, b]))


def test_cli_encode_streams_and_keeps_lines_whole(toy_router_dir, tmp_path, monkeypatch):
    import sprachbund_router.cli.io as io

    monkeypatch.setattr(io, "CHUNK_LINES", 2)
    inp = tmp_path / "in.txt"
    inp.write_text("Die Katze\x0c sitzt\nDer Hund\u2028 läuft\r\nDas Haus\x85 rot\nДом\x1e красный\n", encoding="utf-8")
    out = tmp_path / "x.bin"
    res = runner.invoke(app, ["encode", str(inp), "-o", str(out), "--model", str(toy_router_dir)])
    assert res.exit_code == 0, res.output
    assert np.load(out).shape == (4, 32) and not (tmp_path / "x.bin.npy").exists()
    assert f"to {out}" in res.output


def test_cli_interrupted_encode_keeps_what_was_done(toy_router_dir, tmp_path, monkeypatch):
    import sprachbund_router.cli.io as io

    monkeypatch.setattr(io, "CHUNK_LINES", 2)
    real = SprachbundRouter.encode
    seen = []

    def interrupted(self, texts, *args, **kwargs):
        seen.append(len(texts))
        if len(seen) == 2:
            raise KeyboardInterrupt
        return real(self, texts, *args, **kwargs)

    monkeypatch.setattr(SprachbundRouter, "encode", interrupted)
    inp = tmp_path / "in.txt"
    inp.write_text("Die Katze\nDer Hund\nDas Haus\nДом\nКошка\n", encoding="utf-8")
    out = tmp_path / "v.npy"
    res = runner.invoke(app, ["encode", str(inp), "-o", str(out), "--model", str(toy_router_dir)])
    assert res.exit_code == 130 and "first 2 lines" in res.output
    assert np.load(out).shape == (2, 32)


def test_cli_json_output_streams_valid_json_over_chunks(toy_router_dir, tmp_path, monkeypatch):
    import sprachbund_router.cli.io as io

    monkeypatch.setattr(io, "CHUNK_LINES", 2)
    inp = tmp_path / "in.txt"
    inp.write_text("Die Katze sitzt\nКошка сидит\nDer Hund läuft\n", encoding="utf-8")
    for fmt in ("json", "jsonl"):
        res = runner.invoke(app, ["identify", str(inp), "--model", str(toy_router_dir), "-f", fmt])
        assert res.exit_code == 0, res.output
        rows = json.loads(res.stdout) if fmt == "json" else [json.loads(x) for x in res.stdout.splitlines()]
        assert [r["line"] for r in rows] == [1, 2, 3]


def test_cli_small_cases(toy_router_dir, tmp_path):
    inp = tmp_path / "in.txt"
    inp.write_text("Die Katze sitzt\n", encoding="utf-8")
    res = runner.invoke(app, ["identify", str(inp), "--model", str(toy_router_dir), "--backend", "nonsense"])
    assert res.exit_code == 2 and "nonsense" in _flat(res)
    res = runner.invoke(app, ["identify", str(tmp_path), "--model", str(toy_router_dir)])
    assert res.exit_code == 2 and "is a directory" in _flat(res)
    res = runner.invoke(app, ["encode", str(inp), "-o", str(tmp_path / "missing" / "v.npy"), "--model", str(toy_router_dir)])
    assert res.exit_code == 2 and "does not exist" in _flat(res)
    c = tmp_path / "c.txt"
    c.write_text("the cat sits\nthe dog runs\n", encoding="utf-8")
    res = runner.invoke(app, ["retrieve", "-q", str(inp), "-c", str(c), "-k", "5", "--model", str(toy_router_dir)])
    assert res.exit_code == 0 and "more than the 2 corpus lines" in res.output


def test_head_of_wrong_dimension_is_a_clear_error(router_copy, tmp_path):
    from sprachbund_router.heads import ClassificationHead, HeadConfig

    ClassificationHead(HeadConfig("t", ["a", "b"]), np.zeros((2, 7), np.float32), np.zeros(2, np.float32)).save(
        router_copy / "heads" / "t" / "west")
    _edit(router_copy, lambda c: c.__setitem__("heads", {"t": {"west": "heads/t/west"}}))
    router = SprachbundRouter.from_pretrained(router_copy)
    with pytest.raises(CheckpointError, match="expects 7-d vectors"):
        router.classify(["Die Katze"], task="t", lang="de")


def test_interrupted_hub_export_leaves_nothing(toy_router_dir, tmp_path, monkeypatch):
    import hub_cards.cards as cards
    from exporters.hub import plan_export, write_folders

    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cards, "router_card", broken)
    with pytest.raises(KeyboardInterrupt):
        write_folders(plan_export(toy_router_dir, "org", "toy", dry_run=True), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_fresh_toy_router_still_loads(tmp_path):
    router = SprachbundRouter.from_pretrained(write_toy_router(tmp_path / "r"))
    assert router.encode(["Die Katze sitzt"]).shape == (1, 32)


# ---------------------------------------------------------------- non-finite values (issue 24, items 8 and 9)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_thresholds_are_refused(router_copy, value):
    _edit(router_copy, lambda c: c["language_id"].__setitem__(
        "by_length", {"sentence": {"backend": c["language_id"]["backend"], "min_confidence": value}}))
    with pytest.raises(CheckpointError, match=r"by_length\.sentence\.min_confidence must be a finite number"):
        SprachbundRouter.from_pretrained(router_copy)
    _edit(router_copy, lambda c: (c["language_id"].__setitem__("by_length", {}), c["language_id"].__setitem__("min_confidence", value)))
    with pytest.raises(CheckpointError, match=r"language_id\.min_confidence must be a finite number"):
        SprachbundRouter.from_pretrained(router_copy)


def test_nan_encoder_weights_are_refused(router_copy):
    weights = router_copy / "encoders" / "west" / "model.safetensors"
    tensors = load_file(weights)
    tensors["encoder.layer.0.attention.self.query.weight"][0, 0] = float("nan")
    save_file(tensors, str(weights), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="non-finite.*query.weight|query.weight.*non-finite"):
        SprachbundRouter.from_pretrained(router_copy).encode(["Die Katze"], lang="de")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_tensors_in_router_files_are_refused(router_copy, bad):
    from sprachbund_router.tensors import load_tensors, save_tensors

    path = router_copy / LANGUAGE_VECTORS_NAME
    tensors, meta = load_tensors(path)
    tensors["vectors"][1, 2] = bad
    save_tensors(path, tensors, meta)
    with pytest.raises(CheckpointError, match="tensor 'vectors' holds 1 non-finite value"):
        SprachbundRouter.from_pretrained(router_copy)


# ---------------------------------------------------------------- inputs (issue 24, items 13 and 14)
def test_lone_surrogate_is_named_with_its_index(toy_router):
    from sprachbund_router.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match=r"texts\[1\] is not valid Unicode text.*surrogate"):
        toy_router.encode(["Die Katze schläft.", "Die Katze \ud800 schläft"])


@pytest.mark.parametrize("bad", [None, b"x", 7])
def test_batch_encoder_validates_like_encode(toy_router_dir, bad):
    from sprachbund_router.batch_encoder import BatchEncoder
    from sprachbund_router.errors import InvalidInputError

    enc = BatchEncoder(str(toy_router_dir))
    with pytest.raises(InvalidInputError, match=r"batch\['text'\]\[1\]"):
        enc({"text": ["Die Katze schläft.", bad]})


def test_misspelt_top_level_section_is_refused(router_copy):
    _edit(router_copy, lambda c: c.__setitem__("poolng", c.pop("pooling")))
    with pytest.raises(CheckpointError, match=r"unknown top-level key\(s\) \['poolng'\]"):
        SprachbundRouter.from_pretrained(router_copy)


# ---------------------------------------------------------------- writers never follow links (issue 24, items 1 and 4)
def test_save_pretrained_never_writes_through_links(router_copy, tmp_path):
    router = SprachbundRouter.from_pretrained(router_copy)
    victim = tmp_path / "elsewhere" / "victim"
    victim.parent.mkdir()
    victim.write_text("keep me")
    target = tmp_path / "target"
    target.mkdir()
    (target / CONFIG_NAME).symlink_to(victim)
    (target / "encoders").mkdir()
    (target / "encoders" / "base").symlink_to(victim.parent, target_is_directory=True)
    with pytest.raises(CheckpointError, match="not empty; pass overwrite=True"):
        router.save_pretrained(target)
    out = router.save_pretrained(target, overwrite=True)  # replaced whole: the links are gone, not followed
    assert victim.read_text() == "keep me" and sorted(p.name for p in victim.parent.iterdir()) == ["victim"]
    assert not (out / CONFIG_NAME).is_symlink() and not any(p.is_symlink() for p in out.rglob("*"))
    assert SprachbundRouter.from_pretrained(out).encode(["Die Katze"], lang="de").shape[0] == 1
    link = tmp_path / "link-to-dir"
    link.symlink_to(victim.parent, target_is_directory=True)
    with pytest.raises(CheckpointError, match="is a symbolic link"):
        router.save_pretrained(link, overwrite=True)
    assert victim.read_text() == "keep me"


def test_save_pretrained_is_atomic(router_copy, tmp_path, monkeypatch):
    router = SprachbundRouter.from_pretrained(router_copy)
    target = tmp_path / "t"
    first = router.save_pretrained(target)
    before = sorted(p.relative_to(first).as_posix() for p in first.rglob("*"))

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copy2", boom)
    with pytest.raises(CheckpointError, match="cannot write .*No space left on device"):
        router.save_pretrained(target, overwrite=True)
    assert sorted(p.relative_to(first).as_posix() for p in first.rglob("*")) == before  # untouched
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]  # nothing left behind
    with pytest.raises(CheckpointError, match="own folder"):
        SprachbundRouter.from_pretrained(first).save_pretrained(first, overwrite=True)


# ---------------------------------------------------------------- exporters read and write inside the folder (issue 24, items 2, 3, 7)
def _decoy(tmp_path: Path, router_copy: Path, name: str) -> Path:
    """An encoder folder moved outside the router and linked back in under ``name``."""
    outside = tmp_path / "outside" / name
    outside.parent.mkdir(exist_ok=True)
    shutil.move(str(router_copy / "encoders" / name), outside)
    (router_copy / "encoders" / name).symlink_to(outside, target_is_directory=True)
    return outside


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_export_hub_dry_run_never_reads_through_links(router_copy, tmp_path):
    from exporters.hub import ExportError, plan_export, write_folders

    outside = _decoy(tmp_path, router_copy, "west")
    before = _snapshot(outside.parent)
    with pytest.raises(ExportError, match="encoders.west.path"):
        plan_export(router_copy, "org", dry_run=True)
    (router_copy / "encoders" / "west").unlink()
    shutil.move(str(outside), router_copy / "encoders" / "west")
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "private.txt").write_text("do not publish")
    (router_copy / "analysis").symlink_to(secret, target_is_directory=True)
    with pytest.raises(CheckpointError, match="analysis"):
        write_folders(plan_export(router_copy, "org", dry_run=True), tmp_path / "dry1")
    (router_copy / "analysis").unlink()
    (router_copy / "training_report.json").symlink_to(secret / "private.txt")
    with pytest.raises(CheckpointError, match="training_report.json"):
        write_folders(plan_export(router_copy, "org", dry_run=True), tmp_path / "dry2")
    (router_copy / "training_report.json").unlink()
    assert not list(tmp_path.glob("dry*/**/private.txt"))
    assert _snapshot(tmp_path / "outside") == before or not (tmp_path / "outside" / "west").exists()
    # a dry-run target that is a link: one line on the CLI, nothing written there
    link = tmp_path / "dry-link"
    link.symlink_to(secret, target_is_directory=True)
    res = runner.invoke(app, ["export", "hub", str(router_copy), "--org", "org", "--dry-run", str(link)])
    assert res.exit_code == 1 and "symbolic link" in _flat(res) and "Traceback" not in res.output
    assert sorted(p.name for p in secret.iterdir()) == ["private.txt"]


def test_export_onnx_never_writes_through_a_linked_encoder(router_copy, tmp_path):
    from exporters.onnx import export_router

    outside = _decoy(tmp_path, router_copy, "west")
    before = _snapshot(outside)
    with pytest.raises(CheckpointError, match="encoders.west.path"):
        export_router(router_copy, ["Die Katze schläft."], [])
    assert _snapshot(outside) == before  # no ONNX file written outside
    res = runner.invoke(app, ["export", "onnx", str(router_copy)])
    assert res.exit_code == 1 and "encoders.west.path" in _flat(res) and "Traceback" not in res.output


# ---------------------------------------------------------------- no data loss (issue 24, items 5 to 7)
def test_encode_refuses_to_overwrite_its_input(toy_router_dir, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("Die Katze schläft.\nGuten Morgen.\n", encoding="utf-8")
    before = src.read_bytes()
    res = runner.invoke(app, ["encode", str(src), "-o", str(src), "--model", str(toy_router_dir)])
    assert res.exit_code == 2 and "is the input file" in _flat(res) and src.read_bytes() == before
    hard = tmp_path / "hard.npy"
    hard.hardlink_to(src)
    res = runner.invoke(app, ["encode", str(src), "-o", str(hard), "--model", str(toy_router_dir)])
    assert res.exit_code == 2 and "is the input file" in _flat(res) and src.read_bytes() == before


def test_a_run_failing_before_its_first_row_keeps_the_old_output(toy_router_dir, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("Die Katze schläft.\n", encoding="utf-8")
    out = tmp_path / "out.npy"
    assert runner.invoke(app, ["encode", str(src), "-o", str(out), "--model", str(toy_router_dir)]).exit_code == 0
    before = out.read_bytes()
    res = runner.invoke(app, ["encode", str(src), "-o", str(out), "--lang", "xx", "--model", str(toy_router_dir)])
    assert res.exit_code == 1 and "xx" in _flat(res) and out.read_bytes() == before


def test_unwritable_output_is_one_line(toy_router_dir, tmp_path):
    import os

    if os.geteuid() == 0:  # root writes anywhere: simulate a full disk instead
        src = tmp_path / "in.txt"
        src.write_text("Die Katze schläft.\n", encoding="utf-8")
        from unittest import mock

        with mock.patch("sprachbund_router.npy.NpyWriter.append", side_effect=OSError(28, "No space left on device")):
            res = runner.invoke(app, ["encode", str(src), "-o", str(tmp_path / "o.npy"), "--model", str(toy_router_dir)])
        assert res.exit_code == 1 and "No space left on device" in _flat(res) and "Traceback" not in res.output
        return
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    res = runner.invoke(app, ["encode", str(tmp_path / "in.txt"), "-o", str(ro / "o.npy"), "--model", str(toy_router_dir)])
    assert res.exit_code == 2 and "cannot be written" in _flat(res)


# ---------------------------------------------------------------- damaged files are CheckpointErrors (issue 24, items 10 to 12)
def _disk_index(router_copy: Path, tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sits on the mat\nthe dog runs\nthe house is red\n", encoding="utf-8")
    out = tmp_path / "idx"
    res = runner.invoke(app, ["index", "build", str(corpus), "-o", str(out), "--lang", "en", "--model", str(router_copy)])
    assert res.exit_code == 0, res.output
    return out


def test_damaged_index_folders_are_checkpoint_errors(router_copy, tmp_path):
    from sprachbund_router.disk_index import DiskIndex

    out = _disk_index(router_copy, tmp_path)
    meta = json.loads((out / "index.json").read_text())
    for drop, message in (("encoder", "lacks \\['encoder'\\]"), ("sha256", "lacks \\['sha256'\\]")):
        broken = {k: v for k, v in meta.items() if k != drop}
        (out / "index.json").write_text(json.dumps(broken))
        with pytest.raises(CheckpointError, match=message):
            DiskIndex.load(out)
    no_texts_sum = {**meta, "sha256": {k: v for k, v in meta["sha256"].items() if k != "texts.jsonl"}}
    (out / "index.json").write_text(json.dumps(no_texts_sum))
    with pytest.raises(CheckpointError, match="texts.jsonl is present but has no checksum"):
        DiskIndex.load(out)
    (out / "index.json").write_text(json.dumps({**meta, "search": "faiss-ivf"}))
    with pytest.raises(CheckpointError, match="faiss-ivf but records no ann.faiss"):
        DiskIndex.load(out)
    (out / "index.json").write_text(json.dumps(meta))
    assert len(DiskIndex.load(out)) == 3


def test_a_second_build_into_the_same_target_is_refused_before_any_work(router_copy, tmp_path):
    from sprachbund_router.staging import StagedDirectory

    first = StagedDirectory(tmp_path / "target", "index")
    with pytest.raises(CheckpointError, match="another run is writing"):
        StagedDirectory(tmp_path / "target", "index")
    first.commit()
    assert not (tmp_path / ".target.lock").exists()
    again = StagedDirectory(tmp_path / "other", "index")
    again.abort()
    assert not (tmp_path / ".other.lock").exists()


def test_damaged_router_files_are_checkpoint_errors(router_copy, tmp_path):
    deep = "[" * 200_000 + "]" * 200_000
    (router_copy / CONFIG_NAME).write_text(deep)
    with pytest.raises(CheckpointError, match="nested too deeply|not valid JSON"):
        SprachbundRouter.from_pretrained(router_copy)


def test_damaged_heads_identifier_and_onnx_files(tmp_path):
    from sprachbund_router.checkpoint import read_onnx_export_info
    from sprachbund_router.heads import ClassificationHead
    from sprachbund_router.tensors import save_tensors

    head = tmp_path / "head"
    head.mkdir()
    (head / "head_config.json").write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(CheckpointError, match="head_config.json is corrupt"):
        ClassificationHead.load(head)
    onnx = tmp_path / "enc" / "onnx"
    onnx.mkdir(parents=True)
    (onnx / "export.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_onnx_export_info(tmp_path / "enc")
    (onnx / "export.json").write_text(json.dumps({"layer_resolved": 3}))
    with pytest.raises(CheckpointError, match="lacks \\['mode'"):
        read_onnx_export_info(tmp_path / "enc")
    from sprachbund_router.language_id import NGRAM_FILE, NgramIdentifier

    save_tensors(tmp_path / NGRAM_FILE, {"codes": np.zeros(0, np.uint64), "log_probs": np.zeros((0, 1), np.float32)},
                 {"languages": ["de"], "orders": [1, 2, 3]})
    from sprachbund_router.language_id import NGRAM_ORDERS

    save_tensors(tmp_path / NGRAM_FILE, {"codes": np.zeros(0, np.uint64), "log_probs": np.zeros((0, 1), np.float32)},
                 {"languages": ["de"], "orders": list(NGRAM_ORDERS)})
    with pytest.raises(CheckpointError, match="holds no n-gram codes"):
        NgramIdentifier(["de"], tmp_path)


def test_onnx_model_of_random_bytes_is_a_checkpoint_error(router_copy):
    from sprachbund_router.backend import ONNX_DIR, ONNX_EXPORT_INFO, ONNX_FILES

    for name in ("west", "east", "shared"):
        onnx = router_copy / "encoders" / name / ONNX_DIR
        onnx.mkdir()
        (onnx / ONNX_EXPORT_INFO).write_text(json.dumps({"mode": "mean", "layer_resolved": 2, "num_layers": 2, "dim": 32}))
        (onnx / ONNX_FILES["onnx"]).write_bytes(np.random.default_rng(0).bytes(4096))
    router = SprachbundRouter.from_pretrained(router_copy, backend="onnx")
    with pytest.raises(CheckpointError, match="not a loadable ONNX model"):
        router.encode(["Die Katze"], lang="de")


def test_text_mixing_scripts_falls_back_with_the_reason(toy_router):
    routes = toy_router.route(["Hello Привет 你好 مرحبا", "Die Katze schläft auf dem Sofa."])
    assert routes[0].fallback and "mixed scripts" in routes[0].reason and "Cyrillic" in routes[0].reason
    assert routes[1].reason is None or "mixed" not in routes[1].reason
    from sprachbund_router.language_id import mixed_scripts

    for fine in ("Firefox не отвечает", "猫がソファで寝ている", "한국어 漢字 텍스트", "Открыть в Firefox"):
        assert mixed_scripts(fine) is None, fine


# ---------------------------------------------------------------- one hostile folder, every reader and writer (issue 24)
class _OpenWatch:
    """Paths opened by Python code (``sys.addaudithook``'s ``open`` events) while active."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.active = False
        import sys

        sys.addaudithook(self._hook)  # audit hooks cannot be removed: the hook records only while active

    def _hook(self, event: str, args: tuple) -> None:
        if self.active and event == "open" and isinstance(args[0], (str, bytes, Path)):
            self.paths.append(str(args[0]))


_WATCH = _OpenWatch()


def _atime_shows_reads(folder: Path) -> bool:
    """Whether this filesystem updates access times on reads (relatime does when atime < mtime)."""
    probe = folder / "atime-probe"
    probe.write_text("x")
    st = probe.stat()
    import os

    os.utime(probe, ns=(st.st_mtime_ns - 10**12, st.st_mtime_ns))
    probe.read_text()
    return probe.stat().st_atime_ns > st.st_mtime_ns - 10**12


def test_a_hostile_folder_reaches_nothing_outside(toy_router_dir, tmp_path):
    """Decoy files outside a router folder that links and points at them from inside; loading,
    ``save_pretrained``, ``export onnx``, ``export hub`` and ``index build`` each refuse or stay
    inside, and afterwards no decoy was opened by Python code (audit hook), read by any code
    (access times, where the filesystem keeps them) or changed, and nothing new appeared there."""
    import os

    from exporters.hub import ExportError, plan_export, write_folders
    from exporters.onnx import export_router

    outside = tmp_path / "outside"
    shutil.copytree(toy_router_dir / "encoders" / "west", outside / "west")  # a valid encoder: following it would work
    (outside / "secret.txt").write_text("do not publish")
    (outside / "victim.json").write_text('{"keep": "me"}')
    (outside / "ref").write_text(str(outside / "west"))  # issue 33: a revision naming a file that names a decoy
    (outside / "heads").mkdir()
    (outside / "empty").mkdir()  # an index target linked here would be empty: only the link check can refuse it
    for f in (toy_router_dir / "heads").rglob("*.safetensors"):
        shutil.copyfile(f, outside / "heads" / f.name)
    atimes = _atime_shows_reads(tmp_path)
    for p in outside.rglob("*"):  # atime before mtime: any read moves it (relatime)
        st = p.stat()
        os.utime(p, ns=(st.st_mtime_ns - 10**12, st.st_mtime_ns))
    before = {p: (p.read_bytes() if p.is_file() else None, p.stat().st_atime_ns) for p in sorted(outside.rglob("*"))}

    hostile = Path(shutil.copytree(toy_router_dir, tmp_path / "hostile"))
    shutil.rmtree(hostile / "encoders" / "west")
    (hostile / "encoders" / "west").symlink_to(outside / "west", target_is_directory=True)
    (hostile / "analysis").symlink_to(outside, target_is_directory=True)
    (hostile / "training_report.json").symlink_to(outside / "secret.txt")
    paths_variant = Path(shutil.copytree(toy_router_dir, tmp_path / "escaping"))
    _edit(paths_variant, lambda c: c["encoders"]["west"].__setitem__("path", "../outside/west"))
    revision_variant = Path(shutil.copytree(toy_router_dir, tmp_path / "revision"))
    _edit(revision_variant, lambda c: c["encoders"].__setitem__(
        "west", {"path": None, "repo_id": "evil/enc", "revision": str(outside / "ref")}))
    clean = SprachbundRouter.from_pretrained(toy_router_dir)
    save_target = tmp_path / "save-target"
    save_target.mkdir()
    (save_target / CONFIG_NAME).symlink_to(outside / "victim.json")
    index_out = tmp_path / "index-link"
    index_out.symlink_to(outside / "empty", target_is_directory=True)
    corpus_file = tmp_path / "corpus.txt"
    corpus_file.write_text("Die Katze schläft.\nThe cat sleeps.\n")

    outcomes = {}
    _WATCH.paths.clear()
    _WATCH.active = True
    try:
        for name, folder in (("load (links)", hostile), ("load (paths)", paths_variant)):
            with pytest.raises(CheckpointError, match="encoders.west.path"):
                SprachbundRouter.from_pretrained(folder).encode(["Die Katze"], lang="de")
            outcomes[name] = "refused"
        with pytest.raises(CheckpointError, match="revision"):
            SprachbundRouter.from_pretrained(revision_variant, cache_dir=tmp_path / "hub").encode(["Die Katze"], lang="de")
        outcomes["load (revision)"] = "refused"
        with pytest.raises(CheckpointError, match="not empty"):
            clean.save_pretrained(save_target)
        saved = clean.save_pretrained(save_target, overwrite=True)  # the link is replaced, never followed
        outcomes["save_pretrained"] = "written inside" if not any(p.is_symlink() for p in saved.rglob("*")) else "LINK"
        with pytest.raises(CheckpointError, match="encoders.west.path"):
            export_router(hostile, ["Die Katze schläft."], [])
        outcomes["export onnx"] = "refused"
        with pytest.raises((ExportError, CheckpointError)):
            write_folders(plan_export(hostile, "org", dry_run=True), tmp_path / "dry")
        outcomes["export hub"] = "refused"
        res = runner.invoke(app, ["index", "build", str(corpus_file), "-o", str(index_out), "--model", str(toy_router_dir),
                                  "--ann", "exact"])
        assert res.exit_code == 1 and "symbolic link" in _flat(res) and "Traceback" not in res.output, res.output
        outcomes["index build"] = "refused"
    finally:
        _WATCH.active = False
    assert outcomes["save_pretrained"] == "written inside"
    root = str(outside.resolve())
    opened = [p for p in _WATCH.paths if str(Path(p).resolve()).startswith(root)]
    assert not opened, opened
    after = {p: (p.read_bytes() if p.is_file() else None, p.stat().st_atime_ns) for p in sorted(outside.rglob("*"))}
    assert [p for p in after if p not in before] == []  # nothing new written outside
    for p, (content, atime) in before.items():
        assert after[p][0] == content, f"{p} changed"
        if atimes and content is not None:
            assert after[p][1] == atime, f"{p} was read"
