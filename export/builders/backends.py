"""The engine backends a build can target, one typed object each: whether it is usable here, its
default precision, how it exports attention and at which precision, its engine builder and version.
``auto`` takes the fastest one usable on this machine.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from typing import ClassVar

import click

from sr_runtime.errors import SRError
from sr_runtime.precision import Precision

from ..attention import Attention
from ..cli_options import FiniteFloatRange
from ..reporting import Report
from .engine_builder import EngineBuilder, EngineSettings

AUTO = "auto"


class EngineBackend(ABC):
    name: ClassVar[str]
    title: ClassVar[str]
    default_precision: ClassVar[Precision] = Precision.FP16  # GPUs have fast fp16
    precisions: ClassVar[tuple[Precision, ...]] = (Precision.FP32, Precision.FP16)  # what it can build
    device: ClassVar[str] = "cuda"  # where its engines run
    attention: ClassVar[Attention] = Attention.FUSED
    build_options: ClassVar[tuple[click.Option, ...]] = ()  # build options only this backend takes

    @abstractmethod
    def problem(self) -> str | None:
        """Why this backend cannot build (or run) here, or None when it can."""

    def build_precision(self, asked: Precision | None) -> Precision:
        """The precision a build asked for ``asked`` (None: the default) makes; refuses one this backend lacks."""
        precision = asked or self.default_precision
        if precision not in self.precisions:
            raise SRError(f"--backend {self} builds {' or '.join(p.value for p in self.precisions)}, "
                          f"not {precision.value}")
        return precision

    def onnx_precision(self, precision: Precision, strongly_typed: bool) -> Precision:
        """The precision of the ONNX graphs a build of ``precision`` exports."""
        return precision

    @abstractmethod
    def builder(self, settings: EngineSettings, report: Report) -> EngineBuilder: ...

    @abstractmethod
    def version(self) -> str: ...

    def __str__(self) -> str:
        return self.name


def onnxruntime_providers() -> list[str]:
    if importlib.util.find_spec("onnxruntime") is None:
        return []
    import onnxruntime as ort

    return list(ort.get_available_providers())


class OnnxRuntimeBackend(EngineBackend):
    """ONNX Runtime bundles carry the exported ONNX itself, with attention as its fused node."""

    provider: ClassVar[str]
    install: ClassVar[str]

    def problem(self) -> str | None:
        if self.provider not in onnxruntime_providers():
            return f"ONNX Runtime has no {self.provider} here ({self.install})"
        return None

    def builder(self, settings: EngineSettings, report: Report) -> EngineBuilder:
        from .onnx_graph_builder import OnnxGraphBuilder

        return OnnxGraphBuilder(for_cpu=self.device == "cpu", optimize_offline=settings.cpu_offline,
                          winograd=settings.winograd, fused_group_norm=settings.fused_group_norm)

    def version(self) -> str:
        import onnxruntime

        return onnxruntime.__version__


ONNXRUNTIME_CPU_OPTIONS = (
    click.Option(["--optimize-for-this-cpu", "cpu_offline"], is_flag=True,
                 help="Save the graphs as ONNX Runtime optimises them for this CPU (blocked layout included): "
                      "sessions open in seconds, but only on CPUs with the same instruction sets and this "
                      "ONNX Runtime version."),
    click.Option(["--winograd/--no-winograd"], default=True, show_default=True,
                 help="Wide 3x3 convolutions on large images as Winograd F(4x4, 3x3): 4x fewer products, "
                      "outputs within about 1e-5 of the direct convolution's."),
)


class OnnxRuntimeCpu(OnnxRuntimeBackend):
    name = "onnxruntime-cpu"
    title = "ONNX Runtime CPU"
    build_options = ONNXRUNTIME_CPU_OPTIONS
    default_precision = Precision.FP32
    device = "cpu"
    provider = "CPUExecutionProvider"
    install = "pip install 'sr-export[cpu]'"


ONNXRUNTIME_CUDA_OPTIONS = (
    click.Option(["--fused-group-norm/--no-fused-group-norm"], default=True, show_default=True,
                 help="GroupNorm (+ SiLU) as ONNX Runtime's fused CUDA kernel (channels-last, fp32 statistics) "
                      "instead of the exported fp32 island of nine ops."),
)


class OnnxRuntimeCuda(OnnxRuntimeBackend):
    name = "onnxruntime-cuda"
    title = "ONNX Runtime CUDA"
    build_options = ONNXRUNTIME_CUDA_OPTIONS
    provider = "CUDAExecutionProvider"
    install = "install onnxruntime-gpu on a CUDA machine"


TENSORRT_OPTIONS = (
    click.Option(["--strongly-typed"], is_flag=True,
                 help="TensorRT 10: build the fp16 ONNX strongly typed instead of fp32 ONNX + FP16 flag (11 always does)."),
    click.Option(["--opt-level"], type=click.IntRange(0, 5), default=3, show_default=True,
                 help="TensorRT builder optimization level: 0 builds fastest, 5 searches tactics longest."),
    click.Option(["--workspace", "workspace_gib"], type=FiniteFloatRange(min=0, min_open=True), default=None,
                 help="GiB of scratch memory TensorRT tactics may use while building (default: TensorRT's)."),
)


class TensorRT(EngineBackend):
    """Plans built on this GPU from the plain-attention ONNX (TensorRT's parser knows no com.microsoft
    ops and fuses attention itself); how precision is typed: ``tensorrt_typing``."""

    name = "tensorrt"
    title = "TensorRT"
    attention = Attention.PLAIN
    build_options = TENSORRT_OPTIONS

    def problem(self) -> str | None:
        if importlib.util.find_spec("tensorrt") is None:
            return "the tensorrt Python package is not installed (pip install 'sr-export[tensorrt]' on a CUDA machine)"
        try:
            import tensorrt as trt

            trt.Builder(trt.Logger(trt.Logger.ERROR))
        except Exception as err:  # the PyPI stub and missing libraries fail in many ways; all mean "not usable"
            return f"TensorRT is installed but not usable ({type(err).__name__}: {str(err).splitlines()[0][:160]})"
        if importlib.util.find_spec("cuda") is None:  # the engines' buffers and streams come from cuda-python
            return "cuda-python is not installed (pip install 'sr-export[tensorrt]')"
        return None

    def onnx_precision(self, precision: Precision, strongly_typed: bool, version: str | None = None) -> Precision:
        """TensorRT 10's weakly typed fp16 builds from the fp32 ONNX; ``version``: default the installed one."""
        from .tensorrt_typing import tensorrt_typing, tensorrt_version

        return tensorrt_typing(precision, strongly_typed, version or tensorrt_version()).onnx_precision

    def builder(self, settings: EngineSettings, report: Report) -> EngineBuilder:
        from .tensorrt_builder import TensorRTEngineBuilder

        return TensorRTEngineBuilder(settings, report)

    def version(self) -> str:
        from .tensorrt_typing import tensorrt_version

        return tensorrt_version()


class OpenVinoCpu(EngineBackend):
    """The plain-attention ONNX (OpenVINO reads no com.microsoft ops) with the CPU rewrites but Winograd
    (OpenVINO picks its own convolution algorithms), compiled by OpenVINO when the bundle is opened. bf16 is
    its own precision: bfloat16 arithmetic where the CPU has bf16 instructions, fp32 tensors in and out."""

    name = "openvino-cpu"
    title = "OpenVINO CPU"
    default_precision = Precision.FP32
    precisions = (Precision.FP32, Precision.BF16)
    device = "cpu"
    attention = Attention.PLAIN

    def problem(self) -> str | None:
        if importlib.util.find_spec("openvino") is None:
            return "the openvino package is not installed (pip install 'sr-export[openvino]')"
        return None

    def onnx_precision(self, precision: Precision, strongly_typed: bool) -> Precision:
        return Precision.FP32  # OpenVINO lowers the precision itself, keeping what needs fp32 in fp32

    def builder(self, settings: EngineSettings, report: Report) -> EngineBuilder:
        from .onnx_graph_builder import OnnxGraphBuilder

        return OnnxGraphBuilder(for_cpu=True, winograd=False)

    def version(self) -> str:
        import openvino

        return openvino.__version__


BACKENDS: dict[str, EngineBackend] = {b.name: b for b in (OnnxRuntimeCpu(), OnnxRuntimeCuda(), TensorRT(), OpenVinoCpu())}
CHOICES = (AUTO, *BACKENDS)
# auto: the fastest first. OpenVINO is only built when asked for: at fp32 it is not faster than ONNX Runtime's
# CPU bundle, and bf16 is a precision to choose, not a default.
PREFERENCE = ("tensorrt", "onnxruntime-cuda", "onnxruntime-cpu")


def select_backend(requested: str) -> EngineBackend:
    """The backend ``requested`` (or, for auto, the fastest usable here); fails at once when unusable."""
    if requested == AUTO:
        usable = [BACKENDS[name] for name in PREFERENCE if BACKENDS[name].problem() is None]
        return usable[0] if usable else select_backend(PREFERENCE[-1])
    if requested not in BACKENDS:
        raise SRError(f"unknown backend {requested!r}; choose one of {', '.join(CHOICES)}")
    backend = BACKENDS[requested]
    if problem := backend.problem():
        raise SRError(f"--backend {requested}: {problem}")
    return backend
