import numpy as np
import pytest

from sprachbund_router.errors import CheckpointError, InvalidInputError
from sprachbund_router.index import VectorIndex, top_k_cosine
from training.metrics import bidirectional_accuracy, top1_accuracy


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_top_k_matches_brute_force_in_chunks():
    rng = np.random.default_rng(0)
    q, c = _unit(rng.normal(size=(50, 8))).astype(np.float32), _unit(rng.normal(size=(200, 8))).astype(np.float32)
    idx, scores = top_k_cosine(q, c, 5, chunk=7)
    brute = np.argsort(-(q @ c.T), axis=1, kind="stable")[:, :5]
    assert np.array_equal(idx, brute)
    assert np.all(np.diff(scores, axis=1) <= 1e-7)


def test_ties_break_by_lower_index_and_k_capped():
    c = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    idx, _ = top_k_cosine(np.array([[1.0, 0.0]], dtype=np.float32), c, 10)
    assert idx.tolist() == [[0, 1, 2]]
    with pytest.raises(InvalidInputError, match="top_k"):
        top_k_cosine(c, c, 0)


def test_index_save_load(tmp_path):
    vecs = _unit(np.random.default_rng(1).normal(size=(4, 3))).astype(np.float32)
    index = VectorIndex(vecs, "base", ["a", "b", "c", "d"])
    index.save(tmp_path / "i.safetensors")
    back = VectorIndex.load(tmp_path / "i.safetensors")
    assert back.encoder == "base" and back.texts == ["a", "b", "c", "d"] and np.array_equal(back.vectors, vecs)
    assert back.search(vecs[2:3], 1)[0].tolist() == [[2]]
    with pytest.raises(InvalidInputError, match="do not match"):
        back.search(np.ones((1, 5), dtype=np.float32))
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError):
        VectorIndex.load(tmp_path / "bad.safetensors")


def test_accuracy_perfect_and_shuffled_alignment():
    x = np.eye(6, dtype=np.float32)
    assert top1_accuracy(x, x) == 1.0
    shuffled = x[[1, 2, 3, 4, 5, 0]]
    assert top1_accuracy(x, shuffled) == 0.0
    half = x[[0, 1, 2, 4, 5, 3]]
    assert bidirectional_accuracy(x, half) == {"xx2en": 0.5, "en2xx": 0.5, "mean": 0.5}
