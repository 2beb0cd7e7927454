"""The router config is typed: each bad value or unknown key is refused with the key named."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from sprachbund_router import SprachbundRouter
from sprachbund_router.config import LANGUAGE_VECTORS_NAME
from sprachbund_router.errors import CheckpointError
from tests.helpers import edit_config as _edit

runner = CliRunner()


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


def test_misspelt_top_level_section_is_refused(router_copy):
    _edit(router_copy, lambda c: c.__setitem__("poolng", c.pop("pooling")))
    with pytest.raises(CheckpointError, match=r"unknown top-level key\(s\) \['poolng'\]"):
        SprachbundRouter.from_pretrained(router_copy)
