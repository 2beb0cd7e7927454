"""Property-based fuzzing (hypothesis) of what a router reads and what users pass it.

Router configs: any leaf of a real config replaced by another JSON value (NaN / inf, wrong
types, deep nesting, huge numbers, odd strings), unknown keys added, sections dropped. Inputs:
arbitrary Unicode (surrogates and control characters included), empty and huge strings. Every
outcome must be a valid result, or a :class:`CheckpointError` / ``ValueError`` that says what is
wrong; never another exception. Derandomised and bounded (about a minute for the file), so CI
sees the same examples every run.
"""

from __future__ import annotations

import copy
import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sprachbund_router import SprachbundRouter  # noqa: E402
from sprachbund_router.config import CONFIG_NAME, RouterConfig  # noqa: E402
from sprachbund_router.errors import CheckpointError  # noqa: E402


def fuzz(max_examples: int) -> settings:
    """Derandomised (CI sees the same examples every run), no example database, no deadline."""
    return settings(derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck),
                    max_examples=max_examples)

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["../../etc/passwd", "/etc/passwd", "", "sb1", "en", "torch", "mean", "nan", "\x00",
                     # issue 33: revisions and repo ids that could name paths or that huggingface_hub rejects
                     "/abs/ref", "refs/heads/../../x", "org/na--me", "org/x.git", "o/" + "x" * 100, "hnsw"]),
)
json_value = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                          max_leaves=12)


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside a JSON object."""
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


def _set(obj: Any, path: tuple, value: Any, drop: bool = False) -> None:
    for key in path[:-1]:
        obj = obj[key]
    if drop and isinstance(obj, dict):
        del obj[path[-1]]
    else:
        obj[path[-1]] = value


@st.composite
def damaged_configs(draw: st.DrawFn, base: dict) -> dict:
    """A copy of ``base`` with one to three changes: a value replaced, a key dropped, a key added,
    or the whole config nested deeply."""
    data = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(data)
        kind = draw(st.sampled_from(["replace", "replace", "drop", "add", "nest"]))
        if kind == "nest":  # a value nested thousands of levels deep (written as text by _dump)
            if paths:
                _set(data, draw(st.sampled_from(paths)), f"{DEEP}{draw(st.sampled_from([50, 3_000, 200_000]))}")
            continue
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        if kind == "add":
            parent = data
            for key in path[:-1]:
                parent = parent[key]
            if isinstance(parent, dict):
                parent[draw(st.text(min_size=1, max_size=10))] = draw(json_value)
        else:
            _set(data, path, draw(json_value), drop=kind == "drop")
    return data


DEEP = "__deep__:"


def _dump(data: dict) -> str:
    text = json.dumps(data, allow_nan=True)
    return re.sub(rf'"{DEEP}(\\d+)"', lambda m: "[" * int(m.group(1)) + "]" * int(m.group(1)), text)


@pytest.fixture(scope="module")
def fuzz_dir(toy_router_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("fuzz") / "router"
    shutil.copytree(toy_router_dir, target)
    return target


def test_damaged_configs_load_or_say_what_is_wrong(fuzz_dir: Path, toy_router_dir: Path):
    base = json.loads((toy_router_dir / CONFIG_NAME).read_text())
    outcomes = {"loaded": 0, "refused": 0}

    @fuzz(300)
    @given(damaged_configs(base))
    def check(data: dict) -> None:
        (fuzz_dir / CONFIG_NAME).write_text(_dump(data))
        try:
            cfg = RouterConfig.load(fuzz_dir)
        except (CheckpointError, ValueError) as err:
            assert str(err).strip(), "an error without a message"
            outcomes["refused"] += 1
            return
        outcomes["loaded"] += 1
        for value in _numbers(cfg.to_dict()):  # whatever loads is finite
            assert math.isfinite(value), cfg

    check()
    assert outcomes["refused"] > 50 and outcomes["loaded"] > 0, outcomes


def _numbers(obj: Any) -> list[float]:
    if isinstance(obj, bool):
        return []
    if isinstance(obj, (int, float)):
        return [float(obj)]
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _numbers(v)]
    if isinstance(obj, (list, tuple)):
        return [x for v in obj for x in _numbers(v)]
    return []


def test_damaged_configs_never_break_loading_the_whole_router(fuzz_dir: Path, toy_router_dir: Path):
    """The same damage through ``from_pretrained`` (encoders, spaces, identifier, heads loaded too),
    followed by one encode: a router that loads also works."""
    base = json.loads((toy_router_dir / CONFIG_NAME).read_text())
    outcomes = {"loaded": 0, "refused": 0}

    @fuzz(40)
    @given(damaged_configs(base))
    def check(data: dict) -> None:
        (fuzz_dir / CONFIG_NAME).write_text(_dump(data))
        try:
            router = SprachbundRouter.from_pretrained(fuzz_dir)
            vectors = router.encode(["Die Katze schläft.", "猫"])
        except (CheckpointError, ValueError) as err:
            assert str(err).strip()
            outcomes["refused"] += 1
            return
        outcomes["loaded"] += 1
        assert vectors.shape[0] == 2 and np.isfinite(vectors).all()

    check()
    assert outcomes["refused"] and outcomes["loaded"], outcomes


any_text = st.text(st.characters(codec=None, categories=None), max_size=60)  # surrogates and controls included
texts = st.lists(st.one_of(any_text, st.sampled_from(["", " ", "\x00", "\ud800", "a" * 200_000, "\u202e\u0301" * 50])),
                 min_size=1, max_size=6)


def test_any_unicode_input_is_served_or_refused_by_index(toy_router_dir: Path):
    router = SprachbundRouter.from_pretrained(toy_router_dir)
    outcomes = {"served": 0, "refused": 0}

    @fuzz(150)
    @given(texts)
    def check(batch: list[str]) -> None:
        try:
            vectors = router.encode(batch)
        except ValueError as err:  # InvalidInputError names the text's index
            assert "text" in str(err) and any(ch.isdigit() for ch in str(err)), err
            outcomes["refused"] += 1
            return
        outcomes["served"] += 1
        assert vectors.shape == (len(batch), router.get_sentence_embedding_dimension())
        assert np.isfinite(vectors).all()
        routes = router.route(batch)
        assert len(routes) == len(batch)
        hits = router.retrieve(batch[:1], batch, top_k=1)
        assert len(hits) == 1 and 0 <= hits[0].indices[0] < len(batch)

    check()
    assert outcomes["served"] > 20 and outcomes["refused"] > 5, outcomes


def test_damaged_index_metadata_opens_or_says_what_is_wrong(toy_router_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """Issue 33 item 8: an index.json damaged with its checksums kept consistent opens (and searches)
    or is refused with a CheckpointError; never another exception."""
    from sprachbund_router.disk_index import DiskIndex
    from sprachbund_router.indexing import build_disk_index

    root = tmp_path_factory.mktemp("fuzz-index")
    router = SprachbundRouter.from_pretrained(toy_router_dir)
    idx = build_disk_index(router, lambda: iter([["Die Katze schläft.", "The cat sleeps.", "Кошка спит."]]), root / "idx",
                           ann="exact")
    base = json.loads((idx / "index.json").read_text())
    query = router.encode(["Die Katze"], lang="de")
    outcomes = {"opened": 0, "refused": 0}

    @fuzz(120)
    @given(damaged_configs(base))
    def check(data: dict) -> None:
        (idx / "index.json").write_text(_dump(data))
        try:
            index = DiskIndex.load(idx)
            ids, scores = index.search(query, 1)
        except CheckpointError as err:
            assert str(err).strip()
            outcomes["refused"] += 1
            return
        outcomes["opened"] += 1
        assert ids.shape == (1, 1) and np.isfinite(scores).all()

    check()
    assert outcomes["refused"] > 20 and outcomes["opened"] > 0, outcomes


def test_damaged_optional_results_stop_a_hub_dry_run_with_one_line(toy_router_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """Issue 33 item 6: any JSON value as eval/retrieval.json, analysis/analysis.json or
    training_report.json: the dry run writes its folders or raises ExportError / CheckpointError
    with a one-line message; never another exception."""
    from exporters.hub import ExportError, plan_export, write_folders

    root = tmp_path_factory.mktemp("fuzz-hub")
    router = root / "router"
    shutil.copytree(toy_router_dir, router)
    outcomes = {"written": 0, "refused": 0}
    runs = iter(range(10**6))

    @fuzz(40)
    @given(st.sampled_from(["eval/retrieval.json", "analysis/analysis.json", "training_report.json"]), json_value)
    def check(rel: str, value: Any) -> None:
        for name in ("eval/retrieval.json", "analysis/analysis.json", "training_report.json"):
            (router / name).unlink(missing_ok=True)
        (router / rel).parent.mkdir(parents=True, exist_ok=True)
        (router / rel).write_text(_dump({"v": value})[5:-1] if not isinstance(value, dict) else _dump(value))
        try:
            write_folders(plan_export(router, "org", "router", dry_run=True), root / f"dry{next(runs)}")
        except (ExportError, CheckpointError) as err:
            assert str(err).strip() and "\n" not in str(err)
            outcomes["refused"] += 1
            return
        outcomes["written"] += 1

    check()
    assert outcomes["refused"] > 5, outcomes


def test_changed_shipped_artifacts_are_never_taken(default_router, tmp_path_factory: pytest.TempPathFactory):
    """Issue 33 item 4: any byte of a shipped artifact changed (or the file cut) and the build refuses
    it (it computes its own), while the unchanged copy is taken."""
    from sprachbund_router.paths import data_dir
    from training.pipeline import DEFAULT_PRESET, load_build_config
    from training.shipped import shipped_language_vectors
    from training.space import SHIPPED_DIR, SPACE_FILE, shipped_space, space_key

    config = load_build_config(DEFAULT_PRESET)
    cfg = default_router.config
    encoder = default_router.encoder("base")
    art = tmp_path_factory.mktemp("fuzz-artifacts") / "artifacts"
    shutil.copytree(SHIPPED_DIR, art)
    key = space_key(config.space, cfg.sprachbunds, data_dir() / "corpus")
    spec_args = {"path": SPACE_FILE, "centring": True, "missing_mean": config.space.missing_mean,
                 "fallback_mean": config.space.fallback_mean, "anchor": config.space.anchor}
    lv_key = json.loads((art / "default-language-vectors.json").read_text())["key"]
    work = tmp_path_factory.mktemp("fuzz-work")
    assert shipped_space(key, encoder, cfg.language_to_sprachbund, spec_args, art) is not None
    originals = {name: (art / name).read_bytes() for name in ("default-space.safetensors", "default-language-vectors.safetensors")}

    @fuzz(30)
    @given(st.sampled_from(sorted(originals)), st.floats(0, 1, exclude_max=True), st.integers(1, 255), st.booleans())
    def check(name: str, where: float, flip: int, cut: bool) -> None:
        data = bytearray(originals[name])
        i = int(where * len(data))
        changed = bytes(data[:i]) if cut else bytes(data[:i]) + bytes([data[i] ^ flip]) + bytes(data[i + 1:])
        (art / name).write_bytes(changed)
        try:
            if name == "default-space.safetensors":
                assert shipped_space(key, encoder, cfg.language_to_sprachbund, spec_args, art) is None
            else:
                assert shipped_language_vectors(lv_key, encoder, config.vector_mode, work, artifacts=art) is None
        finally:
            (art / name).write_bytes(originals[name])

    check()
