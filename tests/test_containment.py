"""A router folder is untrusted input: no path in it, and no link, reaches outside it, for readers, writers and exporters."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sprachbund_router import SprachbundRouter
from sprachbund_router.cli import app
from sprachbund_router.config import CONFIG_NAME
from sprachbund_router.errors import CheckpointError
from sprachbund_router.validation import writable_inside
from tests.helpers import edit_config as _edit
from tests.helpers import flat as _flat

runner = CliRunner()


# ---------------------------------------------------------------- paths stay inside the folder
@pytest.mark.parametrize("bad", ["/etc", "../outside", "~/.ssh", "encoders/../../x", "C:\\x"])
def test_encoder_and_head_paths_outside_the_folder_are_refused(router_copy, bad):
    _edit(router_copy, lambda c: c["encoders"]["west"].__setitem__("path", bad))
    with pytest.raises(CheckpointError, match="encoders.west.path") as err:
        SprachbundRouter.from_pretrained(router_copy)
    assert "passwd" not in str(err.value) and "does not exist" not in str(err.value)
    _edit(router_copy, lambda c: c["encoders"]["west"].__setitem__("path", "encoders/west"))
    _edit(router_copy, lambda c: c.__setitem__("heads", {"t": {"west": bad}}))
    with pytest.raises(CheckpointError, match="heads.t.west"):
        SprachbundRouter.from_pretrained(router_copy)


def test_symlinks_leading_outside_are_refused(router_copy, tmp_path):
    outside = tmp_path / "elsewhere"
    shutil.copytree(router_copy / "encoders" / "west", outside)
    shutil.rmtree(router_copy / "encoders" / "west")
    (router_copy / "encoders" / "west").symlink_to(outside, target_is_directory=True)
    with pytest.raises(CheckpointError, match="encoders.west.path.*outside"):
        SprachbundRouter.from_pretrained(router_copy)
    # a link to a file outside, inside an encoder folder
    (router_copy / "encoders" / "west").unlink()
    shutil.copytree(outside, router_copy / "encoders" / "west")
    (router_copy / "encoders" / "west" / "model.safetensors").unlink()
    (router_copy / "encoders" / "west" / "model.safetensors").symlink_to(outside / "model.safetensors")
    with pytest.raises(CheckpointError, match="model.safetensors.*outside"):
        SprachbundRouter.from_pretrained(router_copy)
    # the config file itself
    (router_copy / "encoders" / "west" / "model.safetensors").unlink()
    shutil.copy(outside / "model.safetensors", router_copy / "encoders" / "west")
    real = tmp_path / "config.json"
    shutil.move(router_copy / CONFIG_NAME, real)
    (router_copy / CONFIG_NAME).symlink_to(real)
    with pytest.raises(CheckpointError, match="outside"):
        SprachbundRouter.from_pretrained(router_copy)


def _hub_layout(router_dir: Path, cache: Path, repo: str) -> Path:
    """Lay a router out as huggingface_hub does: snapshot files are links into the repo's blobs."""
    root = cache / ("models--" + repo.replace("/", "--"))
    snap = root / "snapshots" / ("a" * 40)
    for i, src in enumerate(sorted(p for p in router_dir.rglob("*") if p.is_file())):
        blob = root / "blobs" / f"{i:040d}"
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, blob)
        dst = snap / src.relative_to(router_dir)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(Path("../" * (len(dst.relative_to(root).parts) - 1)) / "blobs" / blob.name)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text("a" * 40)
    return snap


def test_hub_cache_layout_loads_but_cannot_reach_outside(router_copy, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snap = _hub_layout(router_copy, tmp_path / "hub", "org/toy")
    router = SprachbundRouter.from_pretrained("org/toy", cache_dir=tmp_path / "hub")
    assert router.encode(["Die Katze sitzt"]).shape == (1, 32)
    # a link that leaves the repository (another repo's blob, or any file) is refused
    secret = tmp_path / "secret.safetensors"
    shutil.copy(router_copy / "encoders" / "east" / "model.safetensors", secret)
    target = snap / "encoders" / "east" / "model.safetensors"
    target.unlink()
    target.symlink_to(secret)
    with pytest.raises(CheckpointError, match="outside the router directory"):
        SprachbundRouter.from_pretrained("org/toy", cache_dir=tmp_path / "hub")


def test_encoder_repo_id_is_never_read_as_a_local_path(router_copy):
    _edit(router_copy, lambda c: c["encoders"]["west"].update(path=None, repo_id="/etc"))
    with pytest.raises(CheckpointError, match="not a Hub repository id"):  # refused as the config loads (issue 33)
        SprachbundRouter.from_pretrained(router_copy)


def test_writers_refuse_paths_outside_their_target(tmp_path):
    with pytest.raises(CheckpointError, match="'..'"):
        writable_inside(tmp_path, "../../x", "heads.t.g")
    with pytest.raises(CheckpointError, match="relative"):
        writable_inside(tmp_path, "/tmp/x", "heads.t.g")


def test_save_pretrained_stays_inside_target(router_copy, tmp_path):
    router = SprachbundRouter.from_pretrained(router_copy)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    router.config.heads = {"t": {"west": "../victim.txt"}}  # bypassing the config's own checks
    out = tmp_path / "out" / "router"
    with pytest.raises(CheckpointError, match="heads.t.west"):
        router.save_pretrained(out)
    assert victim.read_text() == "keep me"


# ---------------------------------------------------------------- writers never follow links (issue 24, items 1 and 4)
def test_save_pretrained_never_writes_through_links(router_copy, tmp_path):
    router = SprachbundRouter.from_pretrained(router_copy)
    victim = tmp_path / "elsewhere" / "victim"
    victim.parent.mkdir()
    victim.write_text("keep me")
    target = tmp_path / "target"
    target.mkdir()
    (target / CONFIG_NAME).symlink_to(victim)
    (target / "encoders").mkdir()
    (target / "encoders" / "base").symlink_to(victim.parent, target_is_directory=True)
    with pytest.raises(CheckpointError, match="not empty; pass overwrite=True"):
        router.save_pretrained(target)
    out = router.save_pretrained(target, overwrite=True)  # replaced whole: the links are gone, not followed
    assert victim.read_text() == "keep me" and sorted(p.name for p in victim.parent.iterdir()) == ["victim"]
    assert not (out / CONFIG_NAME).is_symlink() and not any(p.is_symlink() for p in out.rglob("*"))
    assert SprachbundRouter.from_pretrained(out).encode(["Die Katze"], lang="de").shape[0] == 1
    link = tmp_path / "link-to-dir"
    link.symlink_to(victim.parent, target_is_directory=True)
    with pytest.raises(CheckpointError, match="is a symbolic link"):
        router.save_pretrained(link, overwrite=True)
    assert victim.read_text() == "keep me"


def test_save_pretrained_is_atomic(router_copy, tmp_path, monkeypatch):
    router = SprachbundRouter.from_pretrained(router_copy)
    target = tmp_path / "t"
    first = router.save_pretrained(target)
    before = sorted(p.relative_to(first).as_posix() for p in first.rglob("*"))

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copy2", boom)
    with pytest.raises(CheckpointError, match="cannot write .*No space left on device"):
        router.save_pretrained(target, overwrite=True)
    assert sorted(p.relative_to(first).as_posix() for p in first.rglob("*")) == before  # untouched
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]  # nothing left behind
    with pytest.raises(CheckpointError, match="own folder"):
        SprachbundRouter.from_pretrained(first).save_pretrained(first, overwrite=True)


# ---------------------------------------------------------------- exporters read and write inside the folder (issue 24, items 2, 3, 7)
def _decoy(tmp_path: Path, router_copy: Path, name: str) -> Path:
    """An encoder folder moved outside the router and linked back in under ``name``."""
    outside = tmp_path / "outside" / name
    outside.parent.mkdir(exist_ok=True)
    shutil.move(str(router_copy / "encoders" / name), outside)
    (router_copy / "encoders" / name).symlink_to(outside, target_is_directory=True)
    return outside


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_export_hub_dry_run_never_reads_through_links(router_copy, tmp_path):
    from exporters.hub import ExportError, plan_export, write_folders

    outside = _decoy(tmp_path, router_copy, "west")
    before = _snapshot(outside.parent)
    with pytest.raises(ExportError, match="encoders.west.path"):
        plan_export(router_copy, "org", dry_run=True)
    (router_copy / "encoders" / "west").unlink()
    shutil.move(str(outside), router_copy / "encoders" / "west")
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "private.txt").write_text("do not publish")
    (router_copy / "analysis").symlink_to(secret, target_is_directory=True)
    with pytest.raises(CheckpointError, match="analysis"):
        write_folders(plan_export(router_copy, "org", dry_run=True), tmp_path / "dry1")
    (router_copy / "analysis").unlink()
    (router_copy / "training_report.json").symlink_to(secret / "private.txt")
    with pytest.raises(CheckpointError, match="training_report.json"):
        write_folders(plan_export(router_copy, "org", dry_run=True), tmp_path / "dry2")
    (router_copy / "training_report.json").unlink()
    assert not list(tmp_path.glob("dry*/**/private.txt"))
    assert _snapshot(tmp_path / "outside") == before or not (tmp_path / "outside" / "west").exists()
    # a dry-run target that is a link: one line on the CLI, nothing written there
    link = tmp_path / "dry-link"
    link.symlink_to(secret, target_is_directory=True)
    res = runner.invoke(app, ["export", "hub", str(router_copy), "--org", "org", "--dry-run", str(link)])
    assert res.exit_code == 1 and "symbolic link" in _flat(res) and "Traceback" not in res.output
    assert sorted(p.name for p in secret.iterdir()) == ["private.txt"]


def test_export_onnx_never_writes_through_a_linked_encoder(router_copy, tmp_path):
    from exporters.onnx import export_router

    outside = _decoy(tmp_path, router_copy, "west")
    before = _snapshot(outside)
    with pytest.raises(CheckpointError, match="encoders.west.path"):
        export_router(router_copy, ["Die Katze schläft."], [])
    assert _snapshot(outside) == before  # no ONNX file written outside
    res = runner.invoke(app, ["export", "onnx", str(router_copy)])
    assert res.exit_code == 1 and "encoders.west.path" in _flat(res) and "Traceback" not in res.output


# ---------------------------------------------------------------- one hostile folder, every reader and writer (issue 24)
class _OpenWatch:
    """Paths opened by Python code (``sys.addaudithook``'s ``open`` events) while active."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.active = False
        import sys

        sys.addaudithook(self._hook)  # audit hooks cannot be removed: the hook records only while active

    def _hook(self, event: str, args: tuple) -> None:
        if self.active and event == "open" and isinstance(args[0], (str, bytes, Path)):
            self.paths.append(str(args[0]))


_WATCH = _OpenWatch()


def _atime_shows_reads(folder: Path) -> bool:
    """Whether this filesystem updates access times on reads (relatime does when atime < mtime)."""
    probe = folder / "atime-probe"
    probe.write_text("x")
    st = probe.stat()
    import os

    os.utime(probe, ns=(st.st_mtime_ns - 10**12, st.st_mtime_ns))
    probe.read_text()
    return probe.stat().st_atime_ns > st.st_mtime_ns - 10**12


def test_a_hostile_folder_reaches_nothing_outside(toy_router_dir, tmp_path):
    """Decoy files outside a router folder that links and points at them from inside; loading,
    ``save_pretrained``, ``export onnx``, ``export hub`` and ``index build`` each refuse or stay
    inside, and afterwards no decoy was opened by Python code (audit hook), read by any code
    (access times, where the filesystem keeps them) or changed, and nothing new appeared there."""
    import os

    from exporters.hub import ExportError, plan_export, write_folders
    from exporters.onnx import export_router

    outside = tmp_path / "outside"
    shutil.copytree(toy_router_dir / "encoders" / "west", outside / "west")  # a valid encoder: following it would work
    (outside / "secret.txt").write_text("do not publish")
    (outside / "victim.json").write_text('{"keep": "me"}')
    (outside / "ref").write_text(str(outside / "west"))  # issue 33: a revision naming a file that names a decoy
    (outside / "heads").mkdir()
    (outside / "empty").mkdir()  # an index target linked here would be empty: only the link check can refuse it
    for f in (toy_router_dir / "heads").rglob("*.safetensors"):
        shutil.copyfile(f, outside / "heads" / f.name)
    atimes = _atime_shows_reads(tmp_path)
    for p in outside.rglob("*"):  # atime before mtime: any read moves it (relatime)
        st = p.stat()
        os.utime(p, ns=(st.st_mtime_ns - 10**12, st.st_mtime_ns))
    before = {p: (p.read_bytes() if p.is_file() else None, p.stat().st_atime_ns) for p in sorted(outside.rglob("*"))}

    hostile = Path(shutil.copytree(toy_router_dir, tmp_path / "hostile"))
    shutil.rmtree(hostile / "encoders" / "west")
    (hostile / "encoders" / "west").symlink_to(outside / "west", target_is_directory=True)
    (hostile / "analysis").symlink_to(outside, target_is_directory=True)
    (hostile / "training_report.json").symlink_to(outside / "secret.txt")
    paths_variant = Path(shutil.copytree(toy_router_dir, tmp_path / "escaping"))
    _edit(paths_variant, lambda c: c["encoders"]["west"].__setitem__("path", "../outside/west"))
    revision_variant = Path(shutil.copytree(toy_router_dir, tmp_path / "revision"))
    _edit(revision_variant, lambda c: c["encoders"].__setitem__(
        "west", {"path": None, "repo_id": "evil/enc", "revision": str(outside / "ref")}))
    clean = SprachbundRouter.from_pretrained(toy_router_dir)
    save_target = tmp_path / "save-target"
    save_target.mkdir()
    (save_target / CONFIG_NAME).symlink_to(outside / "victim.json")
    index_out = tmp_path / "index-link"
    index_out.symlink_to(outside / "empty", target_is_directory=True)
    corpus_file = tmp_path / "corpus.txt"
    corpus_file.write_text("Die Katze schläft.\nThe cat sleeps.\n")

    outcomes = {}
    _WATCH.paths.clear()
    _WATCH.active = True
    try:
        for name, folder in (("load (links)", hostile), ("load (paths)", paths_variant)):
            with pytest.raises(CheckpointError, match="encoders.west.path"):
                SprachbundRouter.from_pretrained(folder).encode(["Die Katze"], lang="de")
            outcomes[name] = "refused"
        with pytest.raises(CheckpointError, match="revision"):
            SprachbundRouter.from_pretrained(revision_variant, cache_dir=tmp_path / "hub").encode(["Die Katze"], lang="de")
        outcomes["load (revision)"] = "refused"
        with pytest.raises(CheckpointError, match="not empty"):
            clean.save_pretrained(save_target)
        saved = clean.save_pretrained(save_target, overwrite=True)  # the link is replaced, never followed
        outcomes["save_pretrained"] = "written inside" if not any(p.is_symlink() for p in saved.rglob("*")) else "LINK"
        with pytest.raises(CheckpointError, match="encoders.west.path"):
            export_router(hostile, ["Die Katze schläft."], [])
        outcomes["export onnx"] = "refused"
        with pytest.raises((ExportError, CheckpointError)):
            write_folders(plan_export(hostile, "org", dry_run=True), tmp_path / "dry")
        outcomes["export hub"] = "refused"
        res = runner.invoke(app, ["index", "build", str(corpus_file), "-o", str(index_out), "--model", str(toy_router_dir),
                                  "--ann", "exact"])
        assert res.exit_code == 1 and "symbolic link" in _flat(res) and "Traceback" not in res.output, res.output
        outcomes["index build"] = "refused"
    finally:
        _WATCH.active = False
    assert outcomes["save_pretrained"] == "written inside"
    root = str(outside.resolve())
    opened = [p for p in _WATCH.paths if str(Path(p).resolve()).startswith(root)]
    assert not opened, opened
    after = {p: (p.read_bytes() if p.is_file() else None, p.stat().st_atime_ns) for p in sorted(outside.rglob("*"))}
    assert [p for p in after if p not in before] == []  # nothing new written outside
    for p, (content, atime) in before.items():
        assert after[p][0] == content, f"{p} changed"
        if atimes and content is not None:
            assert after[p][1] == atime, f"{p} was read"
