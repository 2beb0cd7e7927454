"""Top-layer encoders at run time (issue 31): a shared base with trained top layers, served in the
base's vector space, English (the anchor) kept on the base, one vector per text everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sprachbund_router import CheckpointError, SprachbundRouter
from sprachbund_router.config import EncoderSpec, RouterConfig
from sprachbund_router.top_layers import TOP_LAYERS_CONFIG, TOP_LAYERS_WEIGHTS, layer_stack, write_top_layers
from tests.helpers import edit_config
from tests.toy import write_toy_space_router

DE = "die katze sitzt auf der matte"
EN = "the cat sits on the mat"
RU = "кошка дом"


def _trained_state(base_dir: Path, first_layer: int, seed: int = 7) -> dict[str, np.ndarray]:
    """The base's layers from ``first_layer`` up, perturbed (what training would change)."""
    from transformers import BertModel

    model = BertModel.from_pretrained(base_dir, add_pooling_layer=False)
    rng = np.random.default_rng(seed)
    state = {}
    for i, layer in enumerate(layer_stack(model)[first_layer:]):
        for k, v in layer.state_dict().items():
            state[f"{i}.{k}"] = v.numpy() + rng.normal(scale=0.05, size=v.shape).astype(np.float32)
    return state


def write_top_layer_router(root: Path) -> Path:
    """The toy space router with a top-layer encoder ``all`` (layer 1 of 2 trained) serving every
    sprachbund through the base's space, English on the base."""
    write_toy_space_router(root)
    write_top_layers(root / "encoders" / "all", _trained_state(root / "encoders" / "shared", 1), 1, 2)

    def change(cfg: dict) -> None:
        cfg["encoders"]["all"] = {"path": "encoders/all", "max_length": 16, "adapter_base": "shared"}
        cfg["sprachbund_encoders"] = {"west": "all", "east": "all"}
        cfg["language_encoders"] = {"en": "shared"}
        cfg["spaces"]["all"] = dict(cfg["spaces"]["shared"])

    edit_config(root, change)
    return root


@pytest.fixture()
def top_router_dir(tmp_path: Path) -> Path:
    return write_top_layer_router(tmp_path / "router")


def test_top_layers_share_the_lower_layers_and_equal_the_merged_model(top_router_dir):
    router = SprachbundRouter.from_pretrained(top_router_dir, backend="torch")
    base, top = router.encoder("shared"), router.encoder("all")
    base_params = dict(base.model.named_parameters())
    for name, p in top.model.named_parameters():
        shared = p.data_ptr() == base_params[name].data_ptr()
        assert shared == (".layer.1." not in name), name  # embeddings and layer 0 shared, layer 1 its own
    # the same vectors as a full model with the trained layer loaded into it
    from transformers import BertModel

    merged = BertModel.from_pretrained(top_router_dir / "encoders" / "shared", add_pooling_layer=False)
    from safetensors.numpy import load_file

    state = load_file(str(top_router_dir / "encoders" / "all" / TOP_LAYERS_WEIGHTS))
    layer_stack(merged)[1].load_state_dict({k[2:]: torch.from_numpy(v) for k, v in state.items()})
    from sprachbund_router.encoder import SentenceEncoder

    want = SentenceEncoder(merged, base.tokenizer, router.config.pooling, max_length=16).encode([DE, RU])
    np.testing.assert_allclose(top.encode([DE, RU]), want, atol=1e-5)
    assert not np.allclose(base.encode([DE]), want[:1], atol=1e-3)  # the trained layer changes the vectors


def test_english_stays_on_the_base_and_every_other_language_takes_the_top_layers(top_router_dir):
    router = SprachbundRouter.from_pretrained(top_router_dir, backend="torch")
    routes = router.route([EN, DE, RU], lang=["en", "de", "ru"])
    assert [r.encoder for r in routes] == ["shared", "all", "all"]
    got = router.encode([EN, DE, RU], lang=["en", "de", "ru"])
    want = np.stack([
        router.apply_space(router.encoder("shared").encode([EN]), "en", "shared")[0],
        router.apply_space(router.encoder("all").encode([DE]), "de", "all")[0],
        router.apply_space(router.encoder("all").encode([RU]), "ru", "all")[0],
    ])
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert router.config.sprachbund_parts()["west"]["languages_on_their_own_encoder"] == {"en": "shared"}


def test_an_index_gives_each_text_the_vector_encode_gives(top_router_dir):
    router = SprachbundRouter.from_pretrained(top_router_dir, backend="torch")
    corpus, langs = [EN, DE, "der hund", "the dog runs"], ["en", "de", "de", "en"]
    index = router.build_index(corpus, lang=langs)  # one space: asked of the shared encoder, each row takes its own
    assert index.encoder == "shared"
    np.testing.assert_allclose(index.vectors, router.encode(corpus, lang=langs), atol=1e-5)
    forced = router.build_index(corpus, lang=langs, encoder="all")  # whichever encoder of the space is asked for
    np.testing.assert_allclose(forced.vectors, index.vectors, atol=1e-6)
    rows = index.identity["row_encoders"]
    assert rows["languages"] == {"en": "shared"} and rows["sprachbunds"] == {"east": "all", "west": "all"}
    assert set(rows["probes"]) == {"all"}
    hits = router.retrieve(corpus, index, query_lang=langs)
    assert [h.indices[0] for h in hits] == [0, 1, 2, 3]
    assert [h.encoder for h in hits] == ["shared", "all", "all", "shared"]  # the encoder of each query's vector
    router.check_index(index)
    # a corpus in one language and queries in others: every query on its own encoder, the corpus encoded once
    prepared = router.prepare_corpus([EN, "the dog runs"], lang="en")
    hits = router.retrieve([DE, RU], prepared, query_lang=["de", "ru"])
    assert [h.encoder for h in hits] == ["all", "all"] and list(prepared.indexes) == ["shared"]


def test_an_index_whose_rows_came_from_other_encoders_is_refused(top_router_dir, tmp_path):
    router = SprachbundRouter.from_pretrained(top_router_dir, backend="torch")
    index = router.build_index([EN, DE], lang=["en", "de"])
    edit_config(top_router_dir, lambda cfg: cfg.pop("language_encoders"))
    other = SprachbundRouter.from_pretrained(top_router_dir, backend="torch")
    with pytest.raises(CheckpointError, match="row_encoders"):
        other.check_index(index)


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / TOP_LAYERS_WEIGHTS).unlink(), "has no top_layers.safetensors"),
    (lambda d: (d / TOP_LAYERS_CONFIG).write_text(json.dumps({"format": "top-layers", "first_layer": 1, "num_layers": 5})),
     "base of 5 layers"),
    (lambda d: (d / TOP_LAYERS_CONFIG).write_text(json.dumps({"format": "lora", "first_layer": 1, "num_layers": 2})),
     "is not 'top-layers'"),
    (lambda d: (d / TOP_LAYERS_CONFIG).write_text("{broken"), "top_layers.json"),
])
def test_damaged_top_layer_folders_are_refused_by_name(top_router_dir, damage, message):
    damage(top_router_dir / "encoders" / "all")
    router = SprachbundRouter.from_pretrained(top_router_dir, backend="torch")
    with pytest.raises(CheckpointError, match=message):
        router.encode(DE, lang="de")


def test_non_finite_or_foreign_top_layer_weights_are_refused(top_router_dir):
    from safetensors.numpy import load_file, save_file

    file = top_router_dir / "encoders" / "all" / TOP_LAYERS_WEIGHTS
    state = load_file(str(file))
    bad = dict(state)
    bad["0.output.dense.bias"] = np.full_like(state["0.output.dense.bias"], np.nan)
    save_file(bad, str(file))
    with pytest.raises(CheckpointError, match="NaN or inf"):
        SprachbundRouter.from_pretrained(top_router_dir, backend="torch").encode(DE, lang="de")
    wrong = dict(state)
    wrong["0.output.dense.bias"] = np.zeros(7, np.float32)  # trained for a base of another width
    save_file(wrong, str(file))
    with pytest.raises(CheckpointError, match="does not fit this base"):
        SprachbundRouter.from_pretrained(top_router_dir, backend="torch").encode(DE, lang="de")


def test_language_encoders_are_checked(top_router_dir):
    cfg = json.loads((top_router_dir / "router_config.json").read_text())
    for change, message in (({"xx": "shared"}, "in no sprachbund"), ({"en": "nowhere"}, "not defined")):
        with pytest.raises(ValueError, match=message):
            RouterConfig.from_dict({**cfg, "language_encoders": change})
    config = RouterConfig.from_dict(cfg)
    assert config.encoder_of("en") == "shared" and config.encoder_of("de") == "all"
    assert config.row_encoder("all", "shared") == "shared" and config.row_encoder("shared", "all") == "all"
    assert config.canonical_encoder("all") == "shared"
    config.encoders["other"] = EncoderSpec(path="encoders/shared", max_length=16)
    assert config.row_encoder("other", "all") == "other"  # another space: the row keeps what was asked
    assert config.canonical_encoder("other") == "other"


def test_onnx_serves_the_top_layers_with_the_base_table(top_router_dir):
    pytest.importorskip("onnxscript")
    from exporters.onnx import export_router

    infos = export_router(top_router_dir, [EN, DE, RU, "猫 狗"], [])
    assert set(infos) >= {"shared", "all"}
    folder = top_router_dir / "encoders" / "all" / "onnx"
    assert (folder / "model_pooled.onnx").is_file() and not (folder / "token_embeddings.safetensors").exists()
    assert infos["all"]["fp32"]["parity_min_cosine"] >= 0.9995
    torch_router = SprachbundRouter.from_pretrained(top_router_dir, backend="torch")
    onnx_router = SprachbundRouter.from_pretrained(top_router_dir, backend="onnx")
    texts, langs = [EN, DE, RU], ["en", "de", "ru"]
    got, want = onnx_router.encode(texts, lang=langs), torch_router.encode(texts, lang=langs)
    assert float((got * want).sum(1).min()) > 0.999
    assert onnx_router.encoder("all").table is onnx_router.encoder("shared").table  # one table, shared
    assert SprachbundRouter.from_pretrained(top_router_dir).backend in ("onnx", "onnx-int8")


def test_the_hub_export_publishes_the_merged_encoder_and_the_router_loads_its_top_layers(top_router_dir, tmp_path,
                                                                                          monkeypatch):
    pytest.importorskip("onnxscript")
    from sentence_transformers import SentenceTransformer

    from exporters.hub import plan_export, write_folders
    from exporters.onnx import export_router
    from tests.conftest import assert_hub_roundtrip

    export_router(top_router_dir, [EN, DE, RU], [])
    folders = write_folders(plan_export(top_router_dir, "org", "toy", dry_run=True), tmp_path / "dry")
    folder = folders["org/toy-all"]
    assert (folder / TOP_LAYERS_WEIGHTS).is_file() and (folder / "onnx" / "model_pooled.onnx").is_file()
    router = SprachbundRouter.from_pretrained(top_router_dir, backend="torch")
    # plain sentence-transformers gets the top-layer encoder's own vectors; apply_space gives the router's
    st = SentenceTransformer(str(folder), device="cpu").encode([DE, RU])
    np.testing.assert_allclose(st, router.encoder("all").encode([DE, RU]), atol=1e-5)
    served = router.apply_space(st, ["de", "ru"], "all")
    np.testing.assert_allclose(served, router.encode([DE, RU], lang=["de", "ru"]), atol=1e-5)
    hub_cfg = json.loads((folders["org/toy"] / "router_config.json").read_text())
    assert hub_cfg["encoders"]["all"]["adapter_base"] == "shared" and hub_cfg["language_encoders"] == {"en": "shared"}
    assert_hub_roundtrip(top_router_dir, "org/toy2", tmp_path / "rt", monkeypatch)


def test_the_int8_delta_rebuilds_the_trained_layers():
    from training.shipped import from_int8_delta, int8_delta

    rng = np.random.default_rng(0)
    base = {"0.w": rng.normal(size=(16, 8)).astype(np.float32), "0.b": rng.normal(size=8).astype(np.float32)}
    trained = {k: v + rng.normal(scale=1e-3, size=v.shape).astype(np.float32) for k, v in base.items()}
    packed = int8_delta(trained, base)
    assert packed["q.0.w"].dtype == np.int8 and packed["s.0.w"].shape == (16,)
    rebuilt = from_int8_delta(packed, base)
    np.testing.assert_allclose(rebuilt["0.b"], trained["0.b"], atol=1e-7)  # vectors: exact
    # matrices: within half a step of 1/127 of each row's largest change
    bound = np.abs(trained["0.w"] - base["0.w"]).max(axis=1) / 254 + 1e-7
    assert (np.abs(rebuilt["0.w"] - trained["0.w"]).max(axis=1) <= bound).all()
    with pytest.raises(ValueError, match="another base"):
        from_int8_delta(packed, {"0.w": base["0.w"]})


def test_shipped_top_layers_are_taken_only_for_their_space_and_base(top_router_dir, tmp_path):
    from sprachbund_router.config import PoolingConfig
    from sprachbund_router.encoder import SentenceEncoder
    from tests.toy import write_toy_encoder
    from training.shipped import ship_top_layers, shipped_top_layers, space_identity

    artifacts = tmp_path / "artifacts"
    ship_top_layers(top_router_dir / "encoders" / "all", top_router_dir, {"best_step": 1}, artifacts, "top")
    config = RouterConfig.load(top_router_dir)
    key = space_identity(top_router_dir, config.spaces["shared"])
    base = SentenceEncoder.from_pretrained(top_router_dir / "encoders" / "shared", config.pooling,
                                           config.encoders["shared"])
    out = tmp_path / "built"
    meta = shipped_top_layers(base, key, out, artifacts, "top")
    assert meta is not None and meta["record"]["best_step"] == 1
    router = SprachbundRouter.from_pretrained(top_router_dir, backend="torch")
    from sprachbund_router.top_layers import apply_top_layers

    rebuilt = SentenceEncoder(apply_top_layers(base.model, out), base.tokenizer, PoolingConfig(-1, "mean"), max_length=16)
    assert float((rebuilt.encode([DE, RU]) * router.encoder("all").encode([DE, RU])).sum(1).min()) > 0.9999
    assert shipped_top_layers(base, "another space", tmp_path / "b", artifacts, "top") is None
    other = SentenceEncoder.from_pretrained(write_toy_encoder(tmp_path / "other", 11), config.pooling, config.encoders["shared"])
    assert shipped_top_layers(other, key, tmp_path / "c", artifacts, "top") is None
    assert not (tmp_path / "c").exists()  # nothing half-written


def test_a_batch_encoder_asked_for_one_encoder_gives_what_the_index_holds(top_router_dir):
    from sprachbund_router.batch_encoder import BatchEncoder

    router = SprachbundRouter.from_pretrained(top_router_dir, backend="torch")
    texts = [EN, DE, RU]
    index = router.build_index(texts, lang=["en", "de", "ru"])
    for name in ("shared", "all"):
        got = BatchEncoder(model=str(top_router_dir), encoder=name, lang=None)({"text": texts})["embedding"]
        routes = router.route(texts)
        want = router.encode(texts, lang=[r.language for r in routes])
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert index.encoder == "shared"
