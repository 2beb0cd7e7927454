"""Odd inputs and threads: surrogates, bad batch items, mixed scripts, encoders loaded once under threads."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sprachbund_router import SprachbundRouter

runner = CliRunner()


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


def test_text_mixing_scripts_falls_back_with_the_reason(toy_router):
    routes = toy_router.route(["Hello Привет 你好 مرحبا", "Die Katze schläft auf dem Sofa."])
    assert routes[0].fallback and "mixed scripts" in routes[0].reason and "Cyrillic" in routes[0].reason
    assert routes[1].reason is None or "mixed" not in routes[1].reason
    from sprachbund_router.language_id import mixed_scripts

    for fine in ("Firefox не отвечает", "猫がソファで寝ている", "한국어 漢字 텍스트", "Открыть в Firefox"):
        assert mixed_scripts(fine) is None, fine


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
