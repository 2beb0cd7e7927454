"""Which onnxruntime fusions pay on this CPU: the evidence behind ``SLOW_CPU_FUSIONS``.

    python -m benchmarks.onnx_fusions [--rounds 5]

1. Kernels alone, at the default encoder's shapes (batch 32 x 14 tokens, hidden 384, FFN 1536):
   the fused ``SkipLayerNormalization`` against ``Add`` + ``LayerNormalization``, and the fused
   ``BiasGelu`` against ``Add`` + ``Gelu`` (what the plain graph runs).
2. The exported int8 encoder of the default router (``sbr export onnx`` first), on 1,000 real
   sentences of at most 50 characters: onnxruntime with every fusion against the session this
   package opens (``SLOW_CPU_FUSIONS`` switched off). Rounds alternate between the two, in one
   process, and the median is reported with the ratio.

Prints a table and writes ``benchmarks/results/onnx_fusions.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.machine import describe

RESULTS = Path(__file__).resolve().parent / "results"
MS = "com.microsoft"


def _kernel_models(hidden: int, ffn: int) -> dict[str, tuple[Any, dict[str, np.ndarray]]]:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 14, hidden)).astype(np.float32)
    skip = rng.normal(size=(32, 14, hidden)).astype(np.float32)
    h = rng.normal(size=(32, 14, ffn)).astype(np.float32)
    gamma, beta = np.ones(hidden, np.float32), np.zeros(hidden, np.float32)
    bias = (0.1 * rng.normal(size=ffn)).astype(np.float32)

    def model(nodes: list[Any], inputs: dict[str, np.ndarray], inits: dict[str, np.ndarray]) -> tuple[Any, dict]:
        graph = helper.make_graph(
            nodes, "g", [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v.shape)) for k, v in inputs.items()],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
            [numpy_helper.from_array(v, k) for k, v in inits.items()],
        )
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid(MS, 1)])
        return m, inputs

    ln = {"x": x, "s": skip}
    return {
        "SkipLayerNormalization (fused)": model(
            [helper.make_node("SkipLayerNormalization", ["x", "s", "g", "b"], ["y"], domain=MS, epsilon=1e-12)],
            ln, {"g": gamma, "b": beta}),
        "Add + LayerNormalization": model(
            [helper.make_node("Add", ["x", "s"], ["a"]),
             helper.make_node("LayerNormalization", ["a", "g", "b"], ["y"], axis=-1, epsilon=1e-12)],
            ln, {"g": gamma, "b": beta}),
        "BiasGelu (fused)": model([helper.make_node("BiasGelu", ["h", "c"], ["y"], domain=MS)], {"h": h}, {"c": bias}),
        "Add + Gelu": model([helper.make_node("Add", ["h", "c"], ["a"]), helper.make_node("Gelu", ["a"], ["y"])],
                            {"h": h}, {"c": bias}),
    }


def kernel_benchmark(rounds: int, repeats: int = 100) -> dict[str, float]:
    """Microseconds per call of each kernel variant (median over rounds, variants alternating)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # run exactly these nodes
    sessions = {}
    for name, (m, feeds) in _kernel_models(384, 1536).items():
        sessions[name] = (ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"]), feeds)
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(rounds):
        for name, (sess, feeds) in sessions.items():
            for _ in range(5):
                sess.run(None, feeds)
            t = time.perf_counter()
            for _ in range(repeats):
                sess.run(None, feeds)
            times[name].append(1e6 * (time.perf_counter() - t) / repeats)
    return {name: round(statistics.median(ts), 1) for name, ts in times.items()}


def encoder_benchmark(rounds: int, n: int = 1000, max_chars: int = 50) -> dict[str, Any] | None:
    """Sentences/second of the default router's int8 encoder with every onnxruntime fusion and
    with ``SLOW_CPU_FUSIONS`` off, alternating in one process."""
    from benchmarks.router_overhead import sentences
    from sprachbund_router.backend import ONNX_DIR, ONNX_FILES
    from sprachbund_router.config import RouterConfig
    from sprachbund_router.onnx_encoder import SLOW_CPU_FUSIONS, OnnxSentenceEncoder
    from sprachbund_router.paths import default_router_dir

    rdir = default_router_dir()
    config = RouterConfig.load(rdir)
    spec = config.encoders[config.shared_encoder]
    path = rdir / str(spec.path)
    if not (path / ONNX_DIR / ONNX_FILES["onnx-int8"]).is_file():
        return None
    texts = sentences(n, max_chars)
    encoders = {
        "every onnxruntime fusion": OnnxSentenceEncoder(path, config.pooling, spec, "onnx-int8", disabled_optimizers=()),
        f"{', '.join(SLOW_CPU_FUSIONS)} off (default)": OnnxSentenceEncoder(path, config.pooling, spec, "onnx-int8"),
    }
    speeds: dict[str, list[float]] = {name: [] for name in encoders}
    for enc in encoders.values():
        enc.encode(texts[:64])
    for _ in range(rounds):
        for name, enc in encoders.items():
            t = time.perf_counter()
            enc.encode(texts)
            speeds[name].append(len(texts) / (time.perf_counter() - t))
    med = {name: round(statistics.median(v), 1) for name, v in speeds.items()}
    first, second = med.values()
    return {"sentences": len(texts), "max_chars": max_chars, "sentences_per_second": med,
            "speedup": round(second / first, 2), "runs": speeds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    import onnxruntime as ort

    kernels = kernel_benchmark(args.rounds)
    enc = encoder_benchmark(args.rounds)
    lines = ["| kernel (32 x 14 tokens) | us / call |", "|---|---|"]
    lines += [f"| {name} | {us:.0f} |" for name, us in kernels.items()]
    if enc:
        lines += ["", f"int8 encoder, {enc['sentences']} sentences of <= {enc['max_chars']} characters:", "",
                  "| onnxruntime session | sentences/s |", "|---|---|"]
        lines += [f"| {name} | {v:.1f} |" for name, v in enc["sentences_per_second"].items()]
        lines += ["", f"speed-up from leaving the slow fusions off: {enc['speedup']:.2f}x"]
    else:
        lines += ["", "(no int8 export of the default router: run `sbr export onnx` for the encoder comparison)"]
    RESULTS.mkdir(exist_ok=True)
    machine = f"{describe()}, onnxruntime {ort.__version__}"
    (RESULTS / "onnx_fusions.json").write_text(json.dumps({"machine": machine, "rounds": args.rounds,
                                                           "kernels_us": kernels, "int8_encoder": enc}, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
