"""The CPU a bundle runs on, as far as ONNX Runtime's and OpenVINO's kernels care: they pick their code
paths (and ONNX Runtime its blocked convolution layout) by instruction set."""

from __future__ import annotations

import platform
from pathlib import Path

from .manifest import CpuTargetInfo

_CPUINFO = Path("/proc/cpuinfo")
# The instruction sets that decide how fast CPU kernels run and which blocked layout they use.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile")


def _cpuinfo_field(name: str) -> str | None:
    try:
        with _CPUINFO.open() as lines:
            return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(name)), None)
    except OSError:
        return None


def cpu_features() -> list[str]:
    flags = (_cpuinfo_field("flags") or "").split()
    return [flag for flag in ISA_FLAGS if flag in flags]


def cpu_name() -> str:
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def this_cpu() -> CpuTargetInfo:
    return CpuTargetInfo(cpu_name(), cpu_features())
