"""Timing and peak memory of one callable, the same way for every backend."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

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
