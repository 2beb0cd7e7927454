"""Writers and Hub references (issue 33, items 1-3 and 5): saving the real default router,
revisions and repo ids that could name paths, one writer per target, stale locks."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys

import numpy as np
import pytest

from sprachbund_router import SprachbundRouter
from sprachbund_router.errors import CheckpointError
from sprachbund_router.hub import check_repo_id, check_revision, resolve
from sprachbund_router.staging import StagedDirectory, WriterLock

TEXTS = ["Die Katze schläft auf dem Sofa.", "Кошка спит на диване.", "The cat sleeps on the sofa.", "猫はソファで寝ている。"]


def test_the_default_router_saves_and_reloads_whole(default_router, tmp_path):
    # two head keys of the default router name the same folders; each must be copied once
    heads = default_router.config.heads
    rels = [rel for per in heads.values() for rel in per.values()]
    assert len(rels) > len(set(rels)), "the default router no longer shares head folders between keys"
    out = default_router.save_pretrained(tmp_path / "copy")
    again = SprachbundRouter.from_pretrained(out, backend=default_router.backend)
    assert again.config.heads == heads
    np.testing.assert_array_equal(again.encode(TEXTS), default_router.encode(TEXTS))
    got = again.classify(TEXTS[:2], task="emoji-topic")
    want = default_router.classify(TEXTS[:2], task="emoji-topic")
    assert [p.label for p in got] == [p.label for p in want]


@pytest.mark.parametrize("revision", ["/abs/ref", "../../ref", "a/../../b", "main/../x", "x.lock", "refs/heads/../..", "",
                                      "a" * 101])
def test_a_revision_that_could_name_a_path_is_refused(revision):
    with pytest.raises(CheckpointError, match="revision"):
        check_revision(revision)


@pytest.mark.parametrize("revision", [None, "main", "v1.0", "0123456789abcdef0123456789abcdef01234567", "refs/pr/12"])
def test_commits_branches_tags_and_pr_refs_are_accepted(revision):
    check_revision(revision)


@pytest.mark.parametrize("repo", ["org/na--me", "org/x.git", "o/" + "x" * 100, "../etc", "/abs/enc", "a/b/c"])
def test_a_malformed_repo_id_is_one_line(repo):
    with pytest.raises(CheckpointError, match="repo") as err:
        check_repo_id(repo)
    assert "\n" not in str(err.value)


def test_an_encoder_revision_cannot_make_the_loader_read_outside_the_cache(toy_router_dir, tmp_path, monkeypatch):
    """The issue's exploit: revision "/abs/ref", whose file names a decoy encoder outside."""
    import shutil

    router = tmp_path / "router"
    shutil.copytree(toy_router_dir, router)
    cfg = json.loads((router / "router_config.json").read_text())
    name = next(iter(cfg["encoders"]))
    decoy = tmp_path / "decoy-encoder"
    shutil.copytree(router / cfg["encoders"][name]["path"], decoy)
    ref = tmp_path / "ref"
    ref.write_text(str(decoy))
    cfg["encoders"][name] = {"path": None, "repo_id": "evil/enc", "revision": str(ref)}
    (router / "router_config.json").write_text(json.dumps(cfg))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="revision"):
        SprachbundRouter.from_pretrained(router, cache_dir=tmp_path / "hub")
    with pytest.raises(CheckpointError, match="revision"):
        resolve("evil/enc", revision=str(ref), cache_dir=tmp_path / "hub", hub_only=True)


def test_save_refuses_a_target_that_contains_the_router(toy_router_dir, tmp_path):
    import shutil

    src = tmp_path / "parent" / "router"
    shutil.copytree(toy_router_dir, src)
    router = SprachbundRouter.from_pretrained(src)
    with pytest.raises(CheckpointError, match="contains this router"):
        router.save_pretrained(tmp_path / "parent", overwrite=True)
    with pytest.raises(CheckpointError, match="contains this router"):
        router.save_pretrained(tmp_path, overwrite=True)
    assert (src / "router_config.json").is_file()


def _save(src: str, dst: str, barrier, out) -> None:  # pragma: no cover - runs in a child process
    router = SprachbundRouter.from_pretrained(src)
    barrier.wait()
    try:
        router.save_pretrained(dst)
        out.put("ok")
    except CheckpointError as err:
        out.put(str(err))


def test_two_concurrent_saves_into_one_new_folder_do_not_both_succeed(toy_router_dir, tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    dst = tmp_path / "new"
    procs = [ctx.Process(target=_save, args=(str(toy_router_dir), str(dst), barrier, out)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    results = sorted(out.get(timeout=5) for _ in procs)
    assert results.count("ok") == 1, results
    assert "another run is writing" in results[0] or "not empty" in results[0], results
    assert SprachbundRouter.from_pretrained(dst).config.languages


def test_a_lock_names_its_process_and_a_dead_writers_lock_is_taken_over(tmp_path, caplog):
    target = tmp_path / "idx"
    with WriterLock(target) as lock:
        owner = json.loads(lock.path.read_text())
        assert owner["pid"] == os.getpid()
        with pytest.raises(CheckpointError, match=f"process {os.getpid()}"):
            WriterLock(target).acquire()
    # a writer killed with -9 leaves its lock and a partial folder
    code = ("import os,sys; from sprachbund_router.staging import StagedDirectory; "
            f"StagedDirectory({str(target)!r}, 'index'); os.kill(os.getpid(), 9)")
    subprocess.run([sys.executable, "-c", code], check=False)
    assert (tmp_path / ".idx.lock").is_file() and list(tmp_path.glob(".idx.partial-*"))
    with caplog.at_level("WARNING"):
        staged = StagedDirectory(target, "index")
    assert "no longer running" in caplog.text
    assert list(tmp_path.glob(".idx.partial-*")) == [staged.path]
    (staged.path / "x").write_text("1")
    staged.commit()
    assert (target / "x").is_file() and not (tmp_path / ".idx.lock").exists()


def test_a_lock_of_a_live_process_is_not_taken_over(tmp_path):
    target = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = tmp_path / ".out.lock"
        import socket

        lock.write_text(json.dumps({"pid": proc.pid, "host": socket.gethostname()}))
        with pytest.raises(CheckpointError, match=f"process {proc.pid}"):
            StagedDirectory(target, "export")
        assert lock.is_file()
    finally:
        proc.kill()
        proc.wait()
    StagedDirectory(target, "export").abort()
