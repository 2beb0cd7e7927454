"""Scoring several top-layer adapters at once: the base's lower layers run once per batch, and
every model's vectors equal its own full forward pass."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from sprachbund_router.adapters import apply_lora
from sprachbund_router.config import PoolingConfig
from sprachbund_router.encoder import SentenceEncoder
from tests.toy import WORDS, write_toy_encoder
from training.shared_bottom import BASE, encode_shared, first_changed_layer


def _lora(path, layers, seed, hidden=32, r=4):
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for i in layers:
        for m in ("attention.self.query", "attention.self.value", "output.dense"):
            fan_in = 64 if m == "output.dense" else hidden
            key = f"base_model.model.encoder.layer.{i}.{m}"
            tensors[f"{key}.lora_A.weight"] = torch.randn(r, fan_in, generator=g) * 0.3
            tensors[f"{key}.lora_B.weight"] = torch.randn(hidden, r, generator=g) * 0.3
    path.mkdir(parents=True)
    save_file(tensors, str(path / "adapter_model.safetensors"))
    (path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": r, "lora_alpha": 8, "bias": "none"}))
    return path


@pytest.fixture()
def toy(tmp_path):
    base = SentenceEncoder.from_pretrained(write_toy_encoder(tmp_path / "base", 4), PoolingConfig(layer=-1, mode="mean"))
    models = {"top1": apply_lora(base.model, _lora(tmp_path / "a1", [1], 1)),
              "top2": apply_lora(base.model, _lora(tmp_path / "a2", [1], 2))}
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 12)))) for _ in range(23)]
    return base, models, list(dict.fromkeys(texts)), tmp_path


def test_shared_bottom_vectors_equal_each_models_full_forward(toy) -> None:
    base, models, texts, _ = toy
    assert first_changed_layer(base.model, models["top1"]) == 1
    needs = {BASE: texts[:15], "top1": texts[5:], "top2": texts[::2]}
    got = encode_shared(base, models, needs, batch_size=4)  # batches mix lengths: padding must be masked alike
    for name, wanted in needs.items():
        model = base.model if name == BASE else models[name]
        full = SentenceEncoder(model, base.tokenizer, base.pooling).encode(wanted)
        assert sorted(got[name]) == sorted(wanted)
        np.testing.assert_allclose(np.stack([got[name][t] for t in wanted]), full, atol=1e-5)
    assert not np.allclose(got["top1"][texts[6]], got["top2"][texts[6]], atol=1e-3)


def test_an_adapter_on_every_layer_shares_only_the_embeddings(toy) -> None:
    base, models, texts, tmp_path = toy
    models["deep"] = apply_lora(base.model, _lora(tmp_path / "a3", [0, 1], 3))
    assert first_changed_layer(base.model, models["deep"]) == 0
    got = encode_shared(base, models, {"deep": texts, "top1": texts[:3]}, batch_size=5)
    full = SentenceEncoder(models["deep"], base.tokenizer, base.pooling).encode(texts)
    np.testing.assert_allclose(np.stack([got["deep"][t] for t in texts]), full, atol=1e-5)
    with pytest.raises(KeyError, match="no model named 'missing'"):
        encode_shared(base, models, {"missing": texts})


def test_vector_cache_takes_vectors_computed_elsewhere(tmp_path) -> None:
    from training.space import VectorCache

    calls = []

    def encode(texts):
        calls.append(list(texts))
        return np.stack([np.full(3, len(t), np.float32) for t in texts])

    cache = VectorCache(encode, tmp_path / "v.npz")
    assert cache.missing(["a", "bb", "a"]) == ["a", "bb"]
    cache.add(["a", "bb"], np.array([[9, 9, 9], [8, 8, 8]], np.float32))
    cache.add(["a"], np.zeros((1, 3), np.float32))  # known texts keep their vectors
    calls.clear()
    np.testing.assert_array_equal(cache(["bb", "a", "ccc"]), [[8, 8, 8], [9, 9, 9], [3, 3, 3]])
    assert calls == [["ccc"]] and cache.missing(["a", "ccc", "dd"]) == ["dd"]
    cache.save()
    again = VectorCache(encode, tmp_path / "v.npz")
    np.testing.assert_array_equal(again(["a"]), [[9, 9, 9]])
