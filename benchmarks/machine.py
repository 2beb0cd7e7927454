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
from pathlib import Path

#: CPU flags that decide how fast int8 matrix products run.
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "avx512bw", "avx2")


def _cpuinfo(field: str) -> str | None:
    """The first ``field`` of ``/proc/cpuinfo`` (Linux), else None."""
    info = Path("/proc/cpuinfo")
    if info.is_file():
        for line in info.read_text(errors="replace").splitlines():
            name, _, value = line.partition(":")
            if name.strip().lower() == field:
                return value.strip()
    return None


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else ``platform.processor()``."""
    return _cpuinfo("model name") or platform.processor() or "unknown CPU"


def int8_flags() -> list[str]:
    """Which of :data:`INT8_FLAGS` the CPU reports (Linux only; empty elsewhere)."""
    have = set((_cpuinfo("flags") or "").split())
    return [f for f in INT8_FLAGS if f in have]


def describe() -> str:
    """E.g. ``x86_64 AMD EPYC, 2 cores, flags avx2 (no VNNI), Python 3.11.7``."""
    flags = int8_flags()
    vnni = any("vnni" in f or "amx" in f for f in flags)
    isa = f"flags {' '.join(flags) or 'unknown'}{'' if vnni or not flags else ' (no VNNI)'}"
    return f"{platform.machine()} {cpu_model()}, {os.cpu_count()} cores, {isa}, Python {platform.python_version()}"
