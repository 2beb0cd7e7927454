"""What the CPU offers for int8 inference (a leaf module: the runtime's ``auto`` backend and the
benchmarks' machine line both read the flags from here).

onnxruntime's int8 MatMul kernels are several times faster than fp32 on CPUs with VNNI (AVX-512
VNNI, AVX-VNNI), AMX or Arm's int8 dot products, and barely faster on plain AVX2 (1.1x the fp32
graph on an AVX2-only AMD EPYC), so ``auto`` serves int8 only where one of
:data:`FAST_INT8_FLAGS` is present.
"""

from __future__ import annotations

import platform
from functools import cache
from pathlib import Path

#: CPU flags that decide how fast int8 matrix products run (x86, as Linux names them).
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "avx512bw", "avx2")
#: Flags with fast int8 dot-product kernels in onnxruntime (x86 VNNI/AMX; Arm dot product / i8mm).
FAST_INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


def cpuinfo(field: str) -> str | None:
    """The first ``field`` of ``/proc/cpuinfo`` (Linux), else None."""
    info = Path("/proc/cpuinfo")
    if info.is_file():
        for line in info.read_text(errors="replace").splitlines():
            name, _, value = line.partition(":")
            if name.strip().lower() == field:
                return value.strip()
    return None


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``flags`` on x86, ``Features`` on Arm; empty off Linux)."""
    return frozenset((cpuinfo("flags") or cpuinfo("features") or "").split())


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else ``platform.processor()``."""
    return cpuinfo("model name") or platform.processor() or "unknown CPU"


def int8_flags() -> list[str]:
    """Which of :data:`INT8_FLAGS` the CPU reports (Linux only; empty elsewhere)."""
    return [f for f in INT8_FLAGS if f in cpu_flags()]


def fast_int8() -> bool:
    """Whether the CPU has fast int8 kernels (:data:`FAST_INT8_FLAGS`); False where unknown."""
    return bool(cpu_flags() & set(FAST_INT8_FLAGS))
