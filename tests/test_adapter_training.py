"""Adapter training (sentence-transformers' trainer + peft LoRA) on a toy encoder, and the
length-bucketed batches it uses; the trained adapter must load with the runtime's loader."""

import json

import numpy as np
import pytest
import torch

from sprachbund_router.adapters import apply_lora
from sprachbund_router.config import PoolingConfig
from sprachbund_router.encoder import SentenceEncoder
from tests.toy import WORDS, write_toy_encoder
from training.adapters import AdapterSettings, length_bucketed_batches, train_adapter


def test_length_bucketed_batches_use_every_row_once_and_group_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 200, size=1000).tolist()
    batches = length_bucketed_batches(lengths, 16, np.random.default_rng(1), drop_last=False, window=10)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(1000))
    assert sum(len(b) < 16 for b in batches) <= 1
    spread = np.mean([np.ptp([lengths[i] for i in b]) for b in batches if len(b) == 16])
    random_spread = np.mean([np.ptp(np.asarray(lengths)[rng.permutation(1000)[:16]]) for _ in range(50)])
    assert spread < random_spread / 4, (spread, random_spread)  # far less padding than random batches
    dropped = length_bucketed_batches(lengths, 16, np.random.default_rng(1), drop_last=True, window=10)
    assert all(len(b) == 16 for b in dropped) and len(dropped) == 1000 // 16
    again = length_bucketed_batches(lengths, 16, np.random.default_rng(1), drop_last=True, window=10)
    assert dropped == again  # same seed, same order


def _toy_rows(n, seed):
    """``n`` toy texts of 1-7 words and random unit targets of the toy encoder's dimension."""
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(list(WORDS), size=int(rng.integers(1, 8)))) for _ in range(n)]
    targets = rng.normal(size=(n, 32)).astype(np.float32)
    return texts, targets / np.linalg.norm(targets, axis=1, keepdims=True)


def test_trained_adapter_loads_on_the_shared_base(tmp_path):
    pytest.importorskip("peft")
    pytest.importorskip("datasets")
    base_dir = write_toy_encoder(tmp_path / "base", 5)
    texts, targets = _toy_rows(64, seed=0)
    settings = AdapterSettings(r=4, alpha=8, steps=6, batch_size=8, lr=1e-2, device="cpu")
    metrics = train_adapter(base_dir, texts, targets, tmp_path / "adapter", settings, settings.steps)
    assert metrics["steps"] == 6 and np.isfinite(metrics["train_loss"])
    assert {p.name for p in (tmp_path / "adapter").iterdir()} >= {"adapter_config.json", "adapter_model.safetensors",
                                                                  "training_metrics.json"}
    assert json.loads((tmp_path / "adapter" / "training_metrics.json").read_text())["settings"]["length_buckets"] is True
    assert not (tmp_path / ".adapter-trainer").exists()

    pooling = PoolingConfig(layer=-1, mode="mean")
    base = SentenceEncoder.from_pretrained(base_dir, pooling)
    adapted = SentenceEncoder(apply_lora(base.model, tmp_path / "adapter"), base.tokenizer, pooling)
    before, after = base.encode(texts[:8]), adapted.encode(texts[:8])
    assert not np.allclose(before, after, atol=1e-4), "training changed nothing"
    assert np.allclose(base.encode(texts[:8]), before)  # the shared base is untouched

    # the runtime's merged weights give what peft's own (unmerged) forward gives
    from peft import PeftModel
    from transformers import AutoModel

    peft_model = PeftModel.from_pretrained(AutoModel.from_pretrained(str(base_dir)), str(tmp_path / "adapter")).eval()
    batch = base.tokenizer(texts[:8], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = peft_model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    ref = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    assert np.min(np.sum(ref * after, axis=1)) > 0.9999


def test_adapter_on_the_top_layers_only_loads_and_leaves_lower_layers_alone(tmp_path):
    """``layers`` puts LoRA matrices on the chosen layers only (the CPU config's top layers): the
    saved adapter has no others, the runtime loads it, and the lower layers' outputs are the base's."""
    pytest.importorskip("peft")
    pytest.importorskip("datasets")
    from safetensors.numpy import load_file

    base_dir = write_toy_encoder(tmp_path / "base", 5)
    texts, targets = _toy_rows(48, seed=1)
    n_layers = json.loads((base_dir / "config.json").read_text())["num_hidden_layers"]
    top = n_layers - 1
    settings = AdapterSettings(r=4, alpha=8, steps=4, batch_size=8, lr=1e-2, device="cpu", layers=[top])
    train_adapter(base_dir, texts, targets, tmp_path / "adapter", settings, settings.steps)
    names = list(load_file(str(tmp_path / "adapter" / "adapter_model.safetensors")))
    assert names and all(f"layer.{top}." in n for n in names), names

    pooling = PoolingConfig(layer=-1, mode="mean")
    base = SentenceEncoder.from_pretrained(base_dir, pooling)
    adapted = SentenceEncoder(apply_lora(base.model, tmp_path / "adapter"), base.tokenizer, pooling)
    assert not np.allclose(base.encode(texts[:8]), adapted.encode(texts[:8]), atol=1e-4)
    below = PoolingConfig(layer=top, mode="mean")  # hidden_states[top] = output of the layer below the adapted one
    assert np.allclose(SentenceEncoder(base.model, base.tokenizer, below).encode(texts[:8]),
                       SentenceEncoder(adapted.model, adapted.tokenizer, below).encode(texts[:8]), atol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 0}, "steps must be >= 1"),
    ({"layers": []}, "layers must be a non-empty list"),
    ({"layers": [-1]}, "layers must be a non-empty list"),
    ({"extra_pairs": ["wikipedia"]}, "unknown source"),
    ({"extra_pairs": ["libreoffice"], "max_extra_pairs": 0}, "has no effect"),
    ({"target_modules": []}, "target_modules is empty"),
    ({"device": "tpu"}, "device must be"),
])
def test_adapter_settings_reject_bad_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AdapterSettings(**kwargs)


def test_adapter_layers_beyond_the_base_are_named(tmp_path) -> None:
    base_dir = write_toy_encoder(tmp_path / "base", 5)
    texts, targets = _toy_rows(16, seed=2)
    n_layers = json.loads((base_dir / "config.json").read_text())["num_hidden_layers"]
    settings = AdapterSettings(r=4, alpha=8, steps=2, batch_size=8, device="cpu", layers=[n_layers])
    with pytest.raises(ValueError, match=rf"layers \[{n_layers}\] do not exist"):
        train_adapter(base_dir, texts, targets, tmp_path / "adapter", settings, settings.steps)
    assert not (tmp_path / "adapter").exists()


def test_adapter_report_table_shows_missing_sets_as_dashes() -> None:
    from training.adapter_report import SET_KEYS, markdown

    base = {k: 80.0 for k in SET_KEYS} | {"help": None}
    better = {k: 82.5 for k in SET_KEYS} | {"help": None}
    table = markdown({"systems": {"base": base, "adapters: all": better}}).splitlines()
    assert table[2] == "| base | 80.00 | 80.00 | 80.00 | - | 80.00 | 80.00 |"
    assert table[3] == "| adapters: all | 82.50 (+2.50) | 82.50 (+2.50) | 82.50 (+2.50) | - | 82.50 (+2.50) | 82.50 (+2.50) |"


def test_adapter_steps_equal_or_by_data_keep_the_total() -> None:
    from training.adapters import adapter_steps

    groups = {"sb1": ["de", "en", "nl"], "sb2": ["hi"]}
    plans = {**groups, "all": ["de", "en", "hi", "nl"], "random1": ["de", "hi", "nl"], "random2": ["en"]}
    pairs = {"de": 300, "nl": 100, "hi": 400}  # English is the anchor: no pairs of its own
    equal = adapter_steps(AdapterSettings(steps=50), groups, plans, pairs)
    assert equal == {"sb1": 50, "sb2": 50, "all": 100, "random1": 50, "random2": 50}
    data = adapter_steps(AdapterSettings(steps=50, budget="data"), groups, plans, pairs)
    assert data == {"sb1": 50, "sb2": 50, "all": 100, "random1": 100, "random2": 1}
    pairs["hi"] = 200
    data = adapter_steps(AdapterSettings(steps=60, budget="data", all_steps=90), groups, plans, pairs)
    assert data == {"sb1": 80, "sb2": 40, "all": 90, "random1": 120, "random2": 1}
    with pytest.raises(ValueError, match="budget must be"):
        AdapterSettings(budget="tokens")
