"""What a model family gives the benchmark harness: a plug-in per family, no edits elsewhere.

A family names the Table 7 rows it implements, says how its parameters are counted, and hands out a
``Runner`` per (row, backend): one end-to-end call for a 128 -> 512 image, and its stages.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Method:
    """A row of the InvSR paper's Table 7 (x4, 128 -> 512, batch 1, A100)."""

    name: str
    paper_ms: float | None
    paper_params_m: float | None  # as the paper counts it; None where the paper's figure is not known here
    family: str | None = None  # None: not yet reproduced by this toolchain
    steps: int = 0  # denoising steps (0: not a diffusion model)


@dataclass
class Stage:
    name: str
    call: Callable[[], object]
    per_image: int = 1  # how often one image calls it (a UNet step: the step count)


@dataclass
class Runner:
    """One (method, backend) ready to time."""

    run: Callable[[], object]  # one 128 -> 512 image, end to end
    stages: list[Stage] = field(default_factory=list)
    large: Callable[[], object] | None = None  # one 512 -> 2048 image with batched tiles
    large_tiles: int = 0
    note: str = ""


@dataclass(frozen=True)
class ParamCount:
    millions: float
    counts: str  # what the number includes


class BenchFamily(ABC):
    name: str
    methods: tuple[str, ...]  # Method names this family implements

    @abstractmethod
    def params(self, method: Method) -> ParamCount: ...

    @abstractmethod
    def backends(self, device: str) -> list[tuple[str, str]]:
        """(backend, precision) pairs measurable on ``device``, PyTorch eager first."""

    @abstractmethod
    def runner(self, method: Method, backend: str, precision: str, device: str, batch: int) -> Runner: ...

    def release(self, backend: str) -> None:  # noqa: B027 (optional hook: most families hold nothing)
        """Frees what the runners of ``backend`` hold (called before the next backend starts)."""
