"""The default router under backend ``auto``: what a user gets without naming a backend."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sprachbund_router import SprachbundRouter
from sprachbund_router.checkpoint import onnx_unready
from sprachbund_router.cpu import fast_int8

EXAMPLES = Path(__file__).resolve().parents[1] / "sprachbund_router" / "examples"


@pytest.mark.slow
def test_the_default_router_is_served_by_its_checked_onnx_graphs(default_router):
    """`sbr setup` exports the default router's graphs; auto serves them (int8 only on a CPU with
    fast int8 kernels) and gives torch's vectors and retrieval on the bundled example."""
    base = default_router.directory / "encoders" / "base"
    if onnx_unready(base, "onnx") is not None:
        pytest.skip(f"the default router has no checked ONNX graph ({onnx_unready(base, 'onnx')}); run `sbr setup`")
    auto = SprachbundRouter.default()
    int8 = fast_int8() and onnx_unready(base, "onnx-int8") is None
    assert auto.backend == ("onnx-int8" if int8 else "onnx")
    queries = (EXAMPLES / "queries.txt").read_text(encoding="utf-8").splitlines()
    corpus = (EXAMPLES / "corpus.txt").read_text(encoding="utf-8").splitlines()
    fp32 = SprachbundRouter.default(backend="onnx")
    want, got = default_router.encode(queries), fp32.encode(queries)
    assert np.min((want * got).sum(1)) >= 0.9999  # float16 token rows and the graph: the torch vectors
    top1 = {name: [r.indices[0] for r in router.retrieve(queries, corpus)] for name, router in
            (("torch", default_router), ("onnx", fp32), ("auto", auto))}
    assert top1["onnx"] == top1["torch"]
    assert sum(a != b for a, b in zip(top1["auto"], top1["torch"])) <= 2  # int8: at most 2 of 120 differ


@pytest.mark.slow
def test_sbr_encode_on_the_default_backend_imports_no_torch(default_router, tmp_path):
    base = default_router.directory / "encoders" / "base"
    if onnx_unready(base, "onnx") is not None:
        pytest.skip("the default router has no checked ONNX graph; run `sbr setup`")
    src = tmp_path / "ten.txt"
    src.write_text("\n".join((EXAMPLES / "queries.txt").read_text(encoding="utf-8").splitlines()[:10]) + "\n")
    code = f"""
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
sys.argv = ["sbr", "encode", {str(src)!r}, "-o", {str(tmp_path / "v.npy")!r}]
from sprachbund_router.cli import main
try:
    main()
except SystemExit as end:
    assert not end.code, end.code
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    vectors = np.load(tmp_path / "v.npy")
    assert vectors.shape == (10, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-3)
