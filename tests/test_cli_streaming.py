"""The CLI streams: lines stay whole, outputs are valid after every chunk, and nothing is lost."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from sprachbund_router import SprachbundRouter
from sprachbund_router.cli import app
from sprachbund_router.cli.io import NpyWriter, iter_line_chunks
from sprachbund_router.errors import CheckpointError
from tests.helpers import edit_config as _edit
from tests.helpers import flat as _flat
from tests.toy import write_toy_router

runner = CliRunner()


# ---------------------------------------------------------------- lines and streaming
def test_only_newlines_split_lines(tmp_path):
    f = tmp_path / "in.txt"
    f.write_bytes("a\x0cb\nc\x1ed\r\ne\x85f\ng\u2028h\n\n".encode())
    chunks = list(iter_line_chunks(f, "input", chunk=3))
    assert chunks == [(1, ["a\x0cb", "c\x1ed", "e\x85f"]), (4, ["g\u2028h"])]


def test_npy_writer_is_valid_after_every_chunk(tmp_path):
    out = tmp_path / "v.bin"
    writer = NpyWriter(out)
    a, b = np.ones((3, 4), np.float32), np.arange(8, dtype=np.float32).reshape(2, 4)
    writer.append(a)
    assert np.array_equal(np.load(out), a)
    writer.append(b)
    writer.close()
    assert np.array_equal(np.load(out), np.vstack([a, b]))


def test_cli_encode_streams_and_keeps_lines_whole(toy_router_dir, tmp_path, monkeypatch):
    import sprachbund_router.cli.io as io

    monkeypatch.setattr(io, "CHUNK_LINES", 2)
    inp = tmp_path / "in.txt"
    inp.write_text("Die Katze\x0c sitzt\nDer Hund\u2028 läuft\r\nDas Haus\x85 rot\nДом\x1e красный\n", encoding="utf-8")
    out = tmp_path / "x.bin"
    res = runner.invoke(app, ["encode", str(inp), "-o", str(out), "--model", str(toy_router_dir)])
    assert res.exit_code == 0, res.output
    assert np.load(out).shape == (4, 32) and not (tmp_path / "x.bin.npy").exists()
    assert f"to {out}" in res.output


def test_cli_interrupted_encode_keeps_what_was_done(toy_router_dir, tmp_path, monkeypatch):
    import sprachbund_router.cli.io as io

    monkeypatch.setattr(io, "CHUNK_LINES", 2)
    real = SprachbundRouter.encode
    seen = []

    def interrupted(self, texts, *args, **kwargs):
        seen.append(len(texts))
        if len(seen) == 2:
            raise KeyboardInterrupt
        return real(self, texts, *args, **kwargs)

    monkeypatch.setattr(SprachbundRouter, "encode", interrupted)
    inp = tmp_path / "in.txt"
    inp.write_text("Die Katze\nDer Hund\nDas Haus\nДом\nКошка\n", encoding="utf-8")
    out = tmp_path / "v.npy"
    res = runner.invoke(app, ["encode", str(inp), "-o", str(out), "--model", str(toy_router_dir)])
    assert res.exit_code == 130 and "first 2 lines" in res.output
    assert np.load(out).shape == (2, 32)


def test_cli_json_output_streams_valid_json_over_chunks(toy_router_dir, tmp_path, monkeypatch):
    import sprachbund_router.cli.io as io

    monkeypatch.setattr(io, "CHUNK_LINES", 2)
    inp = tmp_path / "in.txt"
    inp.write_text("Die Katze sitzt\nКошка сидит\nDer Hund läuft\n", encoding="utf-8")
    for fmt in ("json", "jsonl"):
        res = runner.invoke(app, ["identify", str(inp), "--model", str(toy_router_dir), "-f", fmt])
        assert res.exit_code == 0, res.output
        rows = json.loads(res.stdout) if fmt == "json" else [json.loads(x) for x in res.stdout.splitlines()]
        assert [r["line"] for r in rows] == [1, 2, 3]


def test_cli_small_cases(toy_router_dir, tmp_path):
    inp = tmp_path / "in.txt"
    inp.write_text("Die Katze sitzt\n", encoding="utf-8")
    res = runner.invoke(app, ["identify", str(inp), "--model", str(toy_router_dir), "--backend", "nonsense"])
    assert res.exit_code == 2 and "nonsense" in _flat(res)
    res = runner.invoke(app, ["identify", str(tmp_path), "--model", str(toy_router_dir)])
    assert res.exit_code == 2 and "is a directory" in _flat(res)
    res = runner.invoke(app, ["encode", str(inp), "-o", str(tmp_path / "missing" / "v.npy"), "--model", str(toy_router_dir)])
    assert res.exit_code == 2 and "does not exist" in _flat(res)
    c = tmp_path / "c.txt"
    c.write_text("the cat sits\nthe dog runs\n", encoding="utf-8")
    res = runner.invoke(app, ["retrieve", "-q", str(inp), "-c", str(c), "-k", "5", "--model", str(toy_router_dir)])
    assert res.exit_code == 0 and "more than the 2 corpus lines" in res.output


def test_head_of_wrong_dimension_is_a_clear_error(router_copy, tmp_path):
    from sprachbund_router.heads import ClassificationHead, HeadConfig

    ClassificationHead(HeadConfig("t", ["a", "b"]), np.zeros((2, 7), np.float32), np.zeros(2, np.float32)).save(
        router_copy / "heads" / "t" / "west")
    _edit(router_copy, lambda c: c.__setitem__("heads", {"t": {"west": "heads/t/west"}}))
    router = SprachbundRouter.from_pretrained(router_copy)
    with pytest.raises(CheckpointError, match="expects 7-d vectors"):
        router.classify(["Die Katze"], task="t", lang="de")


def test_interrupted_hub_export_leaves_nothing(toy_router_dir, tmp_path, monkeypatch):
    import hub_cards.cards as cards
    from exporters.hub import plan_export, write_folders

    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cards, "router_card", broken)
    with pytest.raises(KeyboardInterrupt):
        write_folders(plan_export(toy_router_dir, "org", "toy", dry_run=True), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_fresh_toy_router_still_loads(tmp_path):
    router = SprachbundRouter.from_pretrained(write_toy_router(tmp_path / "r"))
    assert router.encode(["Die Katze sitzt"]).shape == (1, 32)


# ---------------------------------------------------------------- no data loss (issue 24, items 5 to 7)
def test_encode_refuses_to_overwrite_its_input(toy_router_dir, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("Die Katze schläft.\nGuten Morgen.\n", encoding="utf-8")
    before = src.read_bytes()
    res = runner.invoke(app, ["encode", str(src), "-o", str(src), "--model", str(toy_router_dir)])
    assert res.exit_code == 2 and "is the input file" in _flat(res) and src.read_bytes() == before
    hard = tmp_path / "hard.npy"
    hard.hardlink_to(src)
    res = runner.invoke(app, ["encode", str(src), "-o", str(hard), "--model", str(toy_router_dir)])
    assert res.exit_code == 2 and "is the input file" in _flat(res) and src.read_bytes() == before


def test_a_run_failing_before_its_first_row_keeps_the_old_output(toy_router_dir, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("Die Katze schläft.\n", encoding="utf-8")
    out = tmp_path / "out.npy"
    assert runner.invoke(app, ["encode", str(src), "-o", str(out), "--model", str(toy_router_dir)]).exit_code == 0
    before = out.read_bytes()
    res = runner.invoke(app, ["encode", str(src), "-o", str(out), "--lang", "xx", "--model", str(toy_router_dir)])
    assert res.exit_code == 1 and "xx" in _flat(res) and out.read_bytes() == before


def test_unwritable_output_is_one_line(toy_router_dir, tmp_path):
    import os

    if os.geteuid() == 0:  # root writes anywhere: simulate a full disk instead
        src = tmp_path / "in.txt"
        src.write_text("Die Katze schläft.\n", encoding="utf-8")
        from unittest import mock

        with mock.patch("sprachbund_router.npy.NpyWriter.append", side_effect=OSError(28, "No space left on device")):
            res = runner.invoke(app, ["encode", str(src), "-o", str(tmp_path / "o.npy"), "--model", str(toy_router_dir)])
        assert res.exit_code == 1 and "No space left on device" in _flat(res) and "Traceback" not in res.output
        return
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    res = runner.invoke(app, ["encode", str(tmp_path / "in.txt"), "-o", str(ro / "o.npy"), "--model", str(toy_router_dir)])
    assert res.exit_code == 2 and "cannot be written" in _flat(res)
