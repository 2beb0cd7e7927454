"""What machine a benchmark ran on, in one line: int8 speed depends on the CPU's instruction set.

onnxruntime's int8 MatMul kernels are several times faster than fp32 on CPUs with VNNI (AVX-512
VNNI, AVX-VNNI, AMX) and barely faster on plain AVX2, so a speed ratio means little without the
CPU model and these flags. Measured: the int8 graph with every MatMul quantised ran 2.3-2.9x the
PyTorch encoder on the 2-core machine of the 2026-11-26 run (its CPU was not recorded), and 1.1x
the fp32 ONNX graph on an AVX2-only AMD EPYC (2026-12-05).
"""

from __future__ import annotations

import os
import platform

from sprachbund_router.cpu import INT8_FLAGS, cpu_model, int8_flags

__all__ = ["INT8_FLAGS", "cpu_model", "describe", "int8_flags"]


def describe() -> str:
    """E.g. ``x86_64 AMD EPYC, 2 cores, flags avx2 (no VNNI), Python 3.11.7``."""
    flags = int8_flags()
    vnni = any("vnni" in f or "amx" in f for f in flags)
    isa = f"flags {' '.join(flags) or 'unknown'}{'' if vnni or not flags else ' (no VNNI)'}"
    return f"{platform.machine()} {cpu_model()}, {os.cpu_count()} cores, {isa}, Python {platform.python_version()}"
