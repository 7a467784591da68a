"""What upscaling an image will cost, known before it starts, and the memory it may use.

Each family estimates the host memory of its image loop (``Family.cost``) from the image size alone;
the estimates are the loops' measured peaks (tests check them against tracemalloc) and cover the
image buffers, not the engines' own working memory, which the bundle fixes once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import SRError

MEMINFO = Path("/proc/meminfo")
GIB = 2**30
# Of the memory available when the run starts: the rest is left to the engines' activations and the OS.
DEFAULT_SHARE = 0.8
FALLBACK_LIMIT = 8 * GIB  # where the available memory cannot be read


@dataclass(frozen=True)
class ImageCost:
    memory: int  # bytes of host memory the image loop holds at its peak
    tiles: int  # engine work: tiles through the chain


def available_memory() -> int | None:
    """MemAvailable of Linux's /proc/meminfo, in bytes; None elsewhere."""
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def memory_limit(max_memory_gib: float | None) -> int:
    """The limit an image's estimate must stay under: the user's, else a share of what is available now."""
    if max_memory_gib is not None:
        return int(max_memory_gib * GIB)
    available = available_memory()
    return int(available * DEFAULT_SHARE) if available is not None else FALLBACK_LIMIT


def check_cost(width: int, height: int, cost: ImageCost, limit: int) -> None:
    if cost.memory > limit:
        raise SRError(
            f"{width}x{height} would need about {cost.memory / GIB:.1f} GiB of memory ({cost.tiles:,} tiles), above "
            f"the limit of {limit / GIB:.1f} GiB; raise it with --max-memory GIB, or upscale a smaller image"
        )
