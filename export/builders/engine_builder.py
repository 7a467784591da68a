"""What every engine builder is: it turns one exported ONNX graph into a bundle's engine files, with the settings
a build gives. The backends (``backends.py``) pick a builder; the builders import only this."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sr_runtime.manifest import CpuTargetInfo, TargetInfo
from sr_runtime.precision import Precision

if TYPE_CHECKING:
    from ..graph_spec import GraphSpec


@dataclass
class BuiltEngine:
    files: list[Path]  # the engine file, then the files it loads at run time (external weights)
    precision_summary: dict = field(default_factory=dict)  # TensorRT: layer precisions
    rewrites: str = ""  # what the builder rewrote in the graph, if anything


class EngineBuilder(ABC):
    """Turns one exported ONNX graph into the bundle's engine file(s)."""

    target: TargetInfo | None = None  # the GPU the engines are specific to, if any
    cpu_target: CpuTargetInfo | None = None  # the CPU the graphs were optimised for, if they were

    @abstractmethod
    def build(self, onnx_file: Path, folder: Path, spec: GraphSpec, profile: dict) -> BuiltEngine:
        """Writes the engine for ``spec`` into ``folder``; ``profile``: input -> [min, opt, max] shapes."""


@dataclass(frozen=True)
class EngineSettings:
    """What a bundle's engines are built with, beyond the graphs."""

    precision: Precision
    cache_dir: Path  # where builders keep what outlives one bundle (TensorRT's timing cache)
    strongly_typed: bool = False  # TensorRT 10: the fp16 ONNX strongly typed (11 always is)
    opt_level: int = 3  # TensorRT builder optimization level, 0-5
    workspace_gib: float | None = None  # TensorRT tactics' scratch limit (None: TensorRT's default)
    cpu_offline: bool = False  # ONNX Runtime CPU: save the graphs optimised for this CPU
    winograd: bool = True  # ONNX Runtime CPU: wide 3x3 convolutions as Winograd F(4x4, 3x3)
    fused_group_norm: bool = True  # ONNX Runtime CUDA: GroupNorm (+ SiLU) as its fused contrib op
