"""Damaged, truncated, foreign or non-finite files never load silently: each is a CheckpointError naming the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from sprachbund_router import SprachbundRouter
from sprachbund_router.cli import app
from sprachbund_router.config import CONFIG_NAME, LANGUAGE_VECTORS_NAME
from sprachbund_router.errors import CheckpointError
from sprachbund_router.index import VectorIndex
from tests.helpers import edit_config as _edit

runner = CliRunner()


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
