import json
import logging

import numpy as np
import pytest

from sprachbund_router.config import (
    EncoderSpec,
    PoolingConfig,
    RouterConfig,
    load_language_vectors,
    save_language_vectors,
)
from sprachbund_router.errors import CheckpointError, InvalidInputError, UnknownLanguageError
from sprachbund_router.inputs import MAX_CHARS, validate_langs, validate_texts


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (None, "is None"),
        ([], "is empty"),
        (b"bytes", "is bytes"),
        (["ok", None], r"texts\[1\] is None"),
        (["ok", 3], r"texts\[1\] is int"),
        (["ok", "   \n\t"], r"texts\[1\] is empty or whitespace"),
        ([""], r"texts\[0\] is empty"),
        (42, "must be a string or an iterable"),
    ],
)
def test_bad_texts_raise_clear_errors(bad, message):
    with pytest.raises(InvalidInputError, match=message):
        validate_texts(bad)


def test_single_string_and_long_text_cut_with_warning(caplog):
    assert validate_texts("hallo") == ["hallo"]
    with caplog.at_level(logging.WARNING):
        out = validate_texts(["x" * (MAX_CHARS + 10), "kurz"])
    assert len(out[0]) == MAX_CHARS and out[1] == "kurz"
    assert "longer than" in caplog.text


def test_validate_langs_broadcast_and_length():
    assert validate_langs("de", 2) == ["de", "de"]
    assert validate_langs(None, 2) == [None, None]
    with pytest.raises(InvalidInputError, match="3 entries but there are 2"):
        validate_langs(["de", "fr", "en"], 2)


def _config(**kw):
    base = dict(
        sprachbunds={"a": ["de", "en"], "b": ["ru"]},
        encoders={"x": EncoderSpec(path="encoders/x")},
        sprachbund_encoders={"a": "x", "b": "x"},
        shared_encoder="x",
        fallback_encoder="x",
        pooling=PoolingConfig(layer=7, mode="mean"),
    )
    base.update(kw)
    return RouterConfig(**base)


def test_config_roundtrip(tmp_path):
    cfg = _config(pivots={"a": "de", "b": "ru"}, provenance={"note": "ü"})
    cfg.save(tmp_path)
    back = RouterConfig.load(tmp_path)
    assert back.to_dict() == cfg.to_dict()
    assert back.sprachbund_of("en") == "a" and back.languages == ["de", "en", "ru"]
    with pytest.raises(UnknownLanguageError, match="'xx' is not in any sprachbund"):
        back.sprachbund_of("xx")


def test_config_rejects_inconsistent_content():
    with pytest.raises(ValueError, match="is in sprachbunds"):
        _config(sprachbunds={"a": ["de"], "b": ["de"]})
    with pytest.raises(ValueError, match="not defined in encoders"):
        _config(shared_encoder="nope")
    with pytest.raises(ValueError, match="pooling.mode"):
        PoolingConfig(mode="max")  # type: ignore[arg-type]


def test_missing_and_corrupt_config(tmp_path):
    with pytest.raises(CheckpointError, match="not a router directory"):
        RouterConfig.load(tmp_path)
    (tmp_path / "router_config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        RouterConfig.load(tmp_path)
    (tmp_path / "router_config.json").write_text(json.dumps({"sprachbunds": {}}))
    with pytest.raises(CheckpointError, match="invalid"):
        RouterConfig.load(tmp_path)


def test_language_vectors_roundtrip_and_corruption(tmp_path):
    vecs = np.arange(6, dtype=np.float32).reshape(3, 2)
    save_language_vectors(tmp_path, ["de", "en", "ru"], vecs)
    langs, back = load_language_vectors(tmp_path)
    assert langs == ["de", "en", "ru"] and np.array_equal(back, vecs)
    (tmp_path / "language_vectors.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_language_vectors(tmp_path)
