"""The CPU a bundle runs on, as far as ONNX Runtime's and OpenVINO's kernels care: they pick their code
paths (and ONNX Runtime its blocked convolution layout) by instruction set."""

from __future__ import annotations

import platform
from pathlib import Path

from .manifest import CpuTargetInfo

_CPUINFO = Path("/proc/cpuinfo")
# The instruction sets that decide how fast CPU kernels run and which blocked layout they use.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile")
# numpy's names for those it probes itself, by CPUID as the kernels' libraries do.
_NUMPY_NAMES = {"avx2": "AVX2", "fma": "FMA3", "avx512f": "AVX512F", "avx512_vnni": "AVX512VNNI",
                "avx512_bf16": "AVX512BF16"}


def _cpuinfo_field(name: str) -> str | None:
    try:
        with _CPUINFO.open() as lines:
            return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(name)), None)
    except OSError:
        return None


def _cpuid_features() -> dict[str, bool]:
    """What CPUID tells this process, by numpy's probe; {} where this numpy does not expose it."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:
        return {}
    return __cpu_features__


def listed_cpu_features() -> list[str]:
    """The instruction sets the kernel lists for the CPU (/proc/cpuinfo)."""
    flags = (_cpuinfo_field("flags") or "").split()
    return [flag for flag in ISA_FLAGS if flag in flags]


def cpu_features() -> list[str]:
    """The kernel's list less what CPUID denies this process: libraries choose their kernels by CPUID,
    which can answer with less (benchmarks/isa_mask emulates an AVX2-only host that way)."""
    cpuid = _cpuid_features()
    return [flag for flag in listed_cpu_features() if cpuid.get(_NUMPY_NAMES.get(flag, ""), True)]


def cpu_name() -> str:
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def this_cpu() -> CpuTargetInfo:
    return CpuTargetInfo(cpu_name(), cpu_features())
