"""What a model family gives the benchmark harness: a plug-in per family (``ExportFamily.bench``).

A family names the Table 7 rows it implements (with their step counts), says how its parameters are
counted, and hands out a ``Runner`` per (row, backend): one end-to-end call for a 128 -> 512 image,
and its stages.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from sr_runtime.precision import Precision

from ..builders.backends import BACKENDS, EngineBackend

TILE = 128  # Table 7: x4, 128 -> 512, batch 1
LARGE = 512  # LR side of the throughput image (-> 2048)


class TorchMode(str, Enum):
    """The PyTorch baselines measured beside the engines."""

    EAGER = "eager"
    COMPILE = "compile"  # torch.compile (inductor)


BenchBackend = TorchMode | EngineBackend
# Measured in full runs and when --backends names them, left out of --quick: not this device's default engines.
BEYOND_QUICK = ("openvino-cpu",)


def backend_label(backend: BenchBackend) -> str:
    return backend.value if isinstance(backend, TorchMode) else backend.name


def backend_named(label: str) -> BenchBackend:
    if label in {mode.value for mode in TorchMode}:
        return TorchMode(label)
    return BACKENDS[label]


def _openvino_precisions() -> list[Precision]:
    """fp32, and bf16 where OpenVINO has bf16 kernels on this CPU (elsewhere it would compute fp32 again)."""
    from sr_runtime.backends.openvino import computes_bf16

    return [Precision.FP32, *([Precision.BF16] if computes_bf16() else [])]


def measurable_backends(device: str) -> list[tuple[BenchBackend, Precision]]:
    """(backend, precision) pairs measurable on ``device``, PyTorch eager first: fp32 on the CPU (and OpenVINO's
    bf16 where the CPU has it), fp16 everywhere on the GPU (the paper's setting), engines only where usable."""
    if device == "cpu":
        found: list[tuple[BenchBackend, Precision]] = [
            (TorchMode.EAGER, Precision.FP32), (TorchMode.COMPILE, Precision.FP32),
            (BACKENDS["onnxruntime-cpu"], Precision.FP32)]
        openvino = BACKENDS["openvino-cpu"]
        return found + ([(openvino, p) for p in _openvino_precisions()] if openvino.problem() is None else [])
    found = [(TorchMode.EAGER, Precision.FP16), (TorchMode.COMPILE, Precision.FP16)]
    found += [(BACKENDS[name], Precision.FP16) for name in ("onnxruntime-cuda", "tensorrt") if BACKENDS[name].problem() is None]
    return found


@dataclass(frozen=True)
class Method:
    """A row of the InvSR paper's Table 7 (x4, 128 -> 512, batch 1, A100), or one a family adds."""

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


@dataclass(frozen=True)
class VariantRun:
    """A variant of an engine row, in two steps: its bundle is built (where the cache lacks it) before its
    memory is sampled, and opened inside it, so that what the variant adds counts its weights, not its build."""

    build: Callable[[], Path]
    open: Callable[[Path], Callable[[], object]]  # the bundle opened; returns the call to time


@dataclass
class Runner:
    """One (method, backend) ready to time."""

    run: Callable[[], object]  # one 128 -> 512 image, end to end
    stages: list[Stage] = field(default_factory=list)
    large: Callable[[], object] | None = None  # one 512 -> 2048 image with batched tiles
    large_tiles: int = 0
    note: str = ""
    # End to end under other runtime or build options, by label. Built and opened after the default run is
    # measured, so that its engines do not count in that run's memory.
    variants: dict[str, VariantRun] = field(default_factory=dict)


@dataclass(frozen=True)
class ParamCount:
    millions: float
    counts: str  # what the number includes


class BenchFamily(ABC):
    name: str
    methods: dict[str, int]  # the rows this family measures -> their step counts
    weights: str = ""  # "random (full size)" or "checkpoints"

    @abstractmethod
    def params(self, method: Method) -> ParamCount: ...

    @abstractmethod
    def meta_params(self, method: Method) -> ParamCount:
        """What ``params`` counts, from the released architecture alone (modules on the meta device): nothing is
        written, loaded or built."""

    def backends(self, device: str) -> list[tuple[BenchBackend, Precision]]:
        return measurable_backends(device)

    @abstractmethod
    def runner(self, method: Method, backend: BenchBackend, precision: Precision, device: str, batch: int) -> Runner: ...
