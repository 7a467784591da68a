"""Timing and peak memory of one callable, the same way for every backend."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sr_runtime.cpu_target import cpu_features, cpu_name, listed_cpu_features

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


@dataclass
class Timing:
    samples_ms: list[float] = field(default_factory=list)

    @property
    def min_ms(self) -> float:
        return min(self.samples_ms)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples_ms)


def time_calls(call: Callable[[], object], sync: Callable[[], None], runs: int, warmup: int) -> Timing:
    """Wall-clock per call, with the device synchronised before and after each call."""
    for _ in range(warmup):
        call()
    sync()
    timing = Timing()
    for _ in range(runs):
        start = time.perf_counter()
        call()
        sync()
        timing.samples_ms.append((time.perf_counter() - start) * 1e3)
    return timing


def reset_host_peak() -> bool:
    """Resets the process's peak resident set (VmHWM): Linux only, False where that is not possible."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def _status_mib(field: str) -> float | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def host_peak_mib() -> float | None:
    return _status_mib("VmHWM")


def host_resident_mib() -> float | None:
    return _status_mib("VmRSS")


def host_anonymous_mib() -> float | None:
    """Resident memory less file-backed pages (memory-mapped weights, which the kernel drops and reads again
    under pressure): what the process needs for itself."""
    return _status_mib("RssAnon")


ANONYMOUS_SAMPLE_S = 0.02


@dataclass
class AnonymousPeak:
    before_mib: float | None = None
    peak_mib: float | None = None

    @property
    def added_mib(self) -> float | None:
        return None if self.peak_mib is None or self.before_mib is None else self.peak_mib - self.before_mib


@contextmanager
def anonymous_peak() -> Iterator[AnonymousPeak]:
    """The peak of ``host_anonymous_mib`` while the block runs, sampled every 20 ms: Linux keeps no peak of it
    (VmHWM counts mapped files too, so a backend that maps its weights looks heavier than one that copies them)."""
    peak = AnonymousPeak(host_anonymous_mib())
    if peak.before_mib is None:
        yield peak
        return
    peak.peak_mib = peak.before_mib
    done = threading.Event()

    def sample() -> None:
        while not done.wait(ANONYMOUS_SAMPLE_S):
            peak.peak_mib = max(peak.peak_mib, host_anonymous_mib() or 0.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()
        peak.peak_mib = max(peak.peak_mib, host_anonymous_mib() or 0.0)


def device_process_mib(index: int = 0) -> float | None:
    """GPU memory this process holds on device ``index``, by NVML (so engines' allocations count, which
    torch's allocator does not see); None without NVML (``nvidia-ml-py``) or where it cannot tell."""
    import os

    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        used = [p.usedGpuMemory for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle) if p.pid == os.getpid()]
    except Exception:  # no NVML library or driver: not measurable here
        return None
    return used[0] / 2**20 if used and used[0] is not None else None


def machine(device: str) -> dict:
    """Where and with what a report was measured."""
    import os
    from datetime import datetime, timezone

    from sr_runtime.version import TOOL_VERSION

    versions = {}
    for name in ("torch", "onnxruntime", "onnx", "diffusers", "tensorrt", "numpy"):
        try:
            versions[name] = __import__(name).__version__
        except Exception:  # absent or a broken stub: not part of this run
            continue
    device_name, isa = cpu_name(), cpu_features()
    if device == "cuda":
        import torch

        device_name = torch.cuda.get_device_name()
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "device_name": device_name,
        "isa": isa,
        "isa_hidden": [flag for flag in listed_cpu_features() if flag not in isa],
        "fp32_gemm_gflops": fp32_gemm_gflops() if device == "cpu" else None,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "versions": versions,
        "sr_export": TOOL_VERSION,
    }


GEMM_SIZE = 4096


def fp32_gemm_gflops(repeats: int = 3) -> float:
    """The best of ``repeats`` fp32 4096^2 matrix products, in GFLOP/s, on torch's threads: about what the
    host's convolutions and attention can reach at most, so a compute-bound row cannot beat eager by more
    than eager falls short of it."""
    import torch

    a, b = torch.rand(GEMM_SIZE, GEMM_SIZE), torch.rand(GEMM_SIZE, GEMM_SIZE)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * GEMM_SIZE**3 / best / 1e9
