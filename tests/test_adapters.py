"""Sprachbund adapters at run time: PEFT-format LoRA files on a shared base, loaded without peft."""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from sprachbund_router import CheckpointError, SprachbundRouter
from sprachbund_router.config import EncoderSpec, PoolingConfig, RouterConfig, save_language_vectors
from tests.toy import write_toy_encoder

DE = "Die Katze sitzt auf der Matte"
RU = "Кошка сидит на коврике"


def write_lora(path, hidden=32, layers=2, r=4, alpha=8, seed=0, modules=("query", "value")):
    """A LoRA adapter as peft writes it (keys under base_model.model.)."""
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for i in range(layers):
        for m in modules:
            key = f"base_model.model.encoder.layer.{i}.attention.self.{m}"
            tensors[f"{key}.lora_A.weight"] = torch.randn(r, hidden, generator=g) * 0.3
            tensors[f"{key}.lora_B.weight"] = torch.randn(hidden, r, generator=g) * 0.3
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path / "adapter_model.safetensors"))
    (path / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": r, "lora_alpha": alpha, "target_modules": list(modules), "bias": "none",
        "use_rslora": False, "use_dora": False, "fan_in_fan_out": False, "modules_to_save": None}))
    return tensors


@pytest.fixture()
def adapter_router(tmp_path):
    root = tmp_path / "router"
    write_toy_encoder(root / "encoders" / "base", 3)
    lora = write_lora(root / "encoders" / "east")
    config = RouterConfig(
        sprachbunds={"west": ["de", "en", "fr"], "east": ["ru", "zh"]},
        encoders={"base": EncoderSpec(path="encoders/base", max_length=16),
                  "east": EncoderSpec(path="encoders/east", max_length=16, adapter_base="base")},
        sprachbund_encoders={"west": "base", "east": "east"},
        shared_encoder="base", fallback_encoder="base", pooling=PoolingConfig(layer=-1, mode="mean"),
    )
    config.save(root)
    save_language_vectors(root, ["de", "en", "fr", "ru", "zh"], np.zeros((5, 32), np.float32))
    return root, lora


def test_adapter_is_the_base_plus_its_low_rank_update(adapter_router):
    root, lora = adapter_router
    router = SprachbundRouter.from_pretrained(root)
    got = router.encode([DE, RU])
    base = router.encoder("base")
    np.testing.assert_allclose(got[0], base.encode([DE])[0], atol=1e-6)  # west: the base itself
    # east by hand: W + (alpha / r) B A on each adapted matrix of a fresh copy of the base
    from transformers import AutoModel

    from sprachbund_router.encoder import SentenceEncoder

    model = AutoModel.from_pretrained(str(root / "encoders" / "base"))
    with torch.no_grad():
        for i in range(2):
            for m in ("query", "value"):
                key = f"base_model.model.encoder.layer.{i}.attention.self.{m}"
                lin = getattr(model.encoder.layer[i].attention.self, m)
                lin.weight += 2.0 * lora[f"{key}.lora_B.weight"] @ lora[f"{key}.lora_A.weight"]
    want = SentenceEncoder(model, base.tokenizer, router.config.pooling, max_length=16).encode([RU])[0]
    np.testing.assert_allclose(got[1], want, atol=1e-5)
    assert np.abs(got[1] - base.encode([RU])[0]).max() > 1e-3  # the adapter changes the vector
    # the base is loaded once: the adapter shares every parameter it does not change
    east = router.encoder("east")
    assert east.model.embeddings.word_embeddings.weight.data_ptr() == base.model.embeddings.word_embeddings.weight.data_ptr()
    assert east.model.encoder.layer[0].attention.self.query.weight.data_ptr() != \
        base.model.encoder.layer[0].attention.self.query.weight.data_ptr()
    assert east.model.encoder.layer[0].attention.self.key.weight.data_ptr() == \
        base.model.encoder.layer[0].attention.self.key.weight.data_ptr()


def test_adapter_for_another_base_is_refused(adapter_router):
    root, _ = adapter_router
    write_lora(root / "encoders" / "east", hidden=48)
    with pytest.raises(CheckpointError, match="encoder 'east'.*trained on another base"):
        SprachbundRouter.from_pretrained(root).encode([RU])


def test_adapter_naming_modules_the_base_lacks_is_refused(adapter_router):
    root, _ = adapter_router
    shutil.rmtree(root / "encoders" / "east")
    write_lora(root / "encoders" / "east", layers=3)  # the toy base has 2 layers
    with pytest.raises(CheckpointError, match="lacks"):
        SprachbundRouter.from_pretrained(root).encode([RU])


@pytest.mark.parametrize("damage", ["no-weights", "no-config", "pickled", "dora", "corrupt"])
def test_damaged_adapters_are_refused(adapter_router, damage):
    root, _ = adapter_router
    d = root / "encoders" / "east"
    if damage == "no-weights":
        (d / "adapter_model.safetensors").unlink()
    elif damage == "no-config":
        (d / "adapter_config.json").unlink()
    elif damage == "pickled":
        (d / "adapter_model.safetensors").rename(d / "adapter_model.bin")
    elif damage == "dora":
        cfg = json.loads((d / "adapter_config.json").read_text())
        cfg["use_dora"] = True
        (d / "adapter_config.json").write_text(json.dumps(cfg))
    else:
        (d / "adapter_model.safetensors").write_bytes(b"\0" * 40)
    with pytest.raises(CheckpointError):
        SprachbundRouter.from_pretrained(root).encode([RU])


def test_adapter_config_errors(adapter_router):
    root, _ = adapter_router
    cfg = json.loads((root / "router_config.json").read_text())
    cfg["encoders"]["east"]["adapter_base"] = "ghost"
    (root / "router_config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="adapter of 'ghost'"):
        SprachbundRouter.from_pretrained(root)


def test_adapters_need_the_torch_backend(adapter_router):
    root, _ = adapter_router
    router = SprachbundRouter(RouterConfig.load(root), root, backend="onnx")
    with pytest.raises(CheckpointError, match="LoRA adapter"):
        router.encoder("east")
