"""Token-length batching: every text once, similar lengths together, input order kept."""

import numpy as np
import pytest

from sprachbund_router import batching
from sprachbund_router.batching import length_sorted_batches, n_batches, windows


@pytest.mark.parametrize(("n", "batch_size", "window"), [(0, 4, 8), (1, 4, 8), (17, 4, 8), (17, 4, 10), (17, 32, 8), (64, 8, 64)])
def test_windows_cover_everything_without_straddling_batches(n, batch_size, window):
    spans = list(windows(n, batch_size, window))
    assert [i for a, b in spans for i in range(a, b)] == list(range(n))
    assert all((b - a) % batch_size == 0 for a, b in spans[:-1])
    assert n_batches(n, batch_size, window) == sum(len(length_sorted_batches([0] * (b - a), batch_size)) for a, b in spans)


def test_length_sorted_batches():
    lengths = [3, 9, 1, 7, 7, 2, 5]
    batches = length_sorted_batches(lengths, 3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(lengths, reverse=True) and [len(b) for b in batches] == [3, 3, 1]
    with pytest.raises(ValueError, match="batch_size"):
        length_sorted_batches(lengths, 0)
    with pytest.raises(ValueError, match="batch_size"):
        list(windows(5, 0))


def test_encoder_vectors_do_not_depend_on_batching(toy_router, monkeypatch):
    """Small windows and batches (several windows, mixed lengths) give the vectors of one-by-one encoding."""
    enc = toy_router.encoder(toy_router.config.shared_encoder)
    texts = [("Katze " * (i % 7 + 1)).strip() + f" {i}" for i in range(23)] + ["猫 坐 在 垫子 上", "x"]
    one_by_one = np.stack([enc.encode([t])[0] for t in texts])
    monkeypatch.setattr(batching, "SORT_WINDOW", 8)
    batched = enc.encode(texts, batch_size=3)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
