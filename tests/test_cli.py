"""The `sbr` command line, on the real default router and on the toy router."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from sprachbund_router.cli import app
from tests.conftest import EXAMPLES

runner = CliRunner()


def _flat(res) -> str:
    """Output with rich's box drawing and line wrapping removed."""
    return " ".join(res.output.replace("│", " ").split())


def test_help_lists_commands():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("retrieve", "encode", "identify", "classify", "setup", "train"):
        assert cmd in res.output
    res = runner.invoke(app, ["retrieve", "--help"])
    assert "--queries" in res.output and "--top-k" in res.output and "--format" in res.output


def test_retrieve_bundled_example_with_default_router(default_router):
    res = runner.invoke(app, ["retrieve", "--queries", str(EXAMPLES / "queries.txt"),
                              "--corpus", str(EXAMPLES / "corpus.txt"), "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    n = len((EXAMPLES / "queries.txt").read_text(encoding="utf-8").splitlines())
    assert len(rows) == n
    acc = np.mean([r["corpus_line"] == r["query_line"] for r in rows])
    assert acc >= 0.9
    # every query's vector comes from its language's encoder: the trained top layers, English (the anchor:
    # one untranslated query is English) and fallback queries on the base
    cfg = default_router.config
    for r in rows:
        lang = r["query_language"]
        assert r["encoder"] == (cfg.encoder_of(lang) if lang else cfg.fallback_encoder), r
    assert {r["encoder"] for r in rows} == {"all-languages", "base"}


def test_retrieve_tsv_aligned_reports_accuracy(toy_router_dir, tmp_path):
    q = tmp_path / "q.txt"
    c = tmp_path / "c.txt"
    q.write_text("Die Katze sitzt\nДом красный\n")
    c.write_text("the cat sits\nthe house is red\n")
    res = runner.invoke(app, ["retrieve", "-q", str(q), "-c", str(c), "--model", str(toy_router_dir), "--aligned", "-k", "2"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert lines[0].split("\t")[:3] == ["query_line", "rank", "corpus_line"]
    assert len(lines) == 1 + 4 + 1 and lines[-1].startswith("# top-1 accuracy: ")


def test_identify_and_encode(toy_router_dir, tmp_path):
    inp = tmp_path / "in.txt"
    inp.write_text("Die Katze sitzt auf der Matte\nКошка сидит на коврике\n😀\n")
    res = runner.invoke(app, ["identify", str(inp), "--model", str(toy_router_dir), "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["language"] for r in rows] == ["de", "ru", None]
    assert rows[2]["fallback"] is True and "no letters" in rows[2]["reason"]
    out = tmp_path / "v.npy"
    res = runner.invoke(app, ["encode", str(inp), "-o", str(out), "--model", str(toy_router_dir)])
    assert res.exit_code == 0, res.output
    assert np.load(out).shape == (3, 32)


def test_cli_errors_are_clear(toy_router_dir, tmp_path):
    blank = tmp_path / "b.txt"
    blank.write_text("eins\n\nzwei\n")
    res = runner.invoke(app, ["identify", str(blank), "--model", str(toy_router_dir)])
    assert res.exit_code != 0 and "line 2" in _flat(res)
    res = runner.invoke(app, ["identify", str(tmp_path / "missing.txt"), "--model", str(toy_router_dir)])
    assert res.exit_code != 0 and "does not exist" in _flat(res)
    good = tmp_path / "g.txt"
    good.write_text("Katze\n")
    res = runner.invoke(app, ["identify", str(good), "--model", str(tmp_path / "no-router")])
    assert res.exit_code == 1 and "does not exist" in _flat(res)
    res = runner.invoke(app, ["encode", str(good), "-o", str(tmp_path / "x.npy"), "--model", str(toy_router_dir), "--lang", "xx"])
    assert res.exit_code == 1 and "not in any sprachbund" in _flat(res)
    res = runner.invoke(app, ["classify", str(good), "--task", "topic", "--model", str(toy_router_dir), "--lang", "de"])
    assert res.exit_code == 1 and "no head for task 'topic'" in _flat(res)


def test_train_export_eval_errors_before_work(tmp_path):
    res = runner.invoke(app, ["train", "build", str(tmp_path / "missing.toml")])
    assert res.exit_code == 1 and "does not exist" in _flat(res)
    res = runner.invoke(app, ["export", "hub", str(tmp_path), "--org", "someorg", "--dry-run", str(tmp_path / "out")])
    assert res.exit_code == 1 and "not a router directory" in _flat(res)
    res = runner.invoke(app, ["eval", "retrieval", "--model", str(tmp_path / "nope")])
    assert res.exit_code == 1
    for sub in ("train", "eval", "export"):
        assert runner.invoke(app, [sub, "--help"]).exit_code == 0


def test_eval_commands_on_default_router(default_router, tmp_path):
    out = tmp_path / "ret.json"
    res = runner.invoke(app, ["eval", "retrieval", "--pairs", "de-en,nl-de", "--n", "100", "-o", str(out)])
    assert res.exit_code == 0, res.output
    layer = default_router.encoder("base").layer
    assert f"hidden_states[{layer}]" in res.output and "| de-en | 100 |" in res.output
    data = json.loads(out.read_text())
    for row in data["pairs"]:
        # the plain base; the router's system is its served vectors (the top layers, then centred and mapped)
        assert row["systems"]["base"]["encoder"] == "base" and row["systems"]["router"]["encoder"] == "all-languages"
        assert row["systems"]["base"]["mean"] > 70 and row["systems"]["router"]["mean"] > 70
    res = runner.invoke(app, ["eval", "langid", "--languages", "de,ru,hi", "--per-bucket", "10", "-o", str(tmp_path / "l.json")])
    assert res.exit_code == 0, res.output
    lid = json.loads((tmp_path / "l.json").read_text())
    assert len(lid["identifiers"]) >= 5  # the router's three backends and at least two other packages, same run
    served = next(v for k, v in lid["identifiers"].items() if k.endswith("(served)"))
    assert served["by_length"]["sentence"]["language"] >= 90
    for res in lid["identifiers"].values():
        for b in res["by_length"].values():
            assert b["sprachbund"] + b["wrong_sprachbund"] + b["fallback"] == pytest.approx(100, abs=0.05)
    res = runner.invoke(app, ["eval", "classify", "--languages", "de,en", "--max-per-language", "100",
                              "--max-test-per-language", "50", "-o", str(tmp_path / "c.json")])
    assert res.exit_code == 0, res.output
    cls = json.loads((tmp_path / "c.json").read_text())
    assert set(cls["results"]) == {"english", "pivot", "every"}
    # 8 classes (chance 12.5%); 50 test names in 2 languages: a sanity bound, not a quality claim (README has those)
    assert cls["results"]["every"]["router"]["mean"] > 30 and cls["results"]["every"]["base"]["mean"] > 30


def test_version_and_a_closed_pipe(toy_router_dir, tmp_path):
    """`sbr --version`; `sbr identify F | head -1` ends quietly with status 0; no weight-loading bars."""
    import subprocess
    import sys

    from sprachbund_router import __version__

    sbr = [sys.executable, "-m", "sprachbund_router.cli"]
    out = subprocess.run([*sbr, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"sprachbund-router {__version__}"
    big = tmp_path / "big.txt"
    big.write_text("Die Katze schläft auf dem Sofa.\n" * 5000, encoding="utf-8")
    proc = subprocess.run(f"{' '.join(sbr)} identify {big} --model {toy_router_dir} | head -1; exit ${{PIPESTATUS[0]}}",
                          shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-500:]
    assert proc.stdout.startswith("line\tlanguage") and "Traceback" not in proc.stderr and "Broken pipe" not in proc.stderr
    assert "Loading weights" not in proc.stderr
