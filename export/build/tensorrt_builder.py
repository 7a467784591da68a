"""``sr-export build --backend tensorrt``: ONNX graph -> TensorRT plan, one per graph spec.

Per graph: ONNX parser -> network (typed as precision.tensorrt_typing says) -> one optimization profile
from the spec's min/opt/max shapes -> serialized plan, with a workspace limit, a builder optimization
level and a timing cache kept beside the bundle folder (``engines/.timing-cache-trt<version>-<gpu>.bin``)
so rebuilds on the same GPU skip the kernel timing. After each build the engine inspector lists the
layer precisions; an engine asked for in fp16 that computes nothing in fp16 fails the build.

tensorrt and cuda-python are imported when a builder is made, so the rules here are tested without them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sr_runtime.backends.base import GpuInfo
from sr_runtime.backends.tensorrt_compat import always_strongly_typed
from sr_runtime.errors import SRError
from sr_runtime.manifest import TargetInfo

from ..graphs import GraphSpec
from .fp32_islands import LayerView, fp32_layers
from .layer_precisions import check_precision, precision_summary
from .precision import tensorrt_typing

Report = Callable[[str], None]
DEFAULT_OPT_LEVEL = 3  # TensorRT's own default; 4-5 compile dynamic kernels and take much longer
OPT_LEVELS = range(0, 6)
HARDWARE_COMPATIBILITY = ("none", "ampere_plus")


@dataclass(frozen=True)
class TensorRTSettings:
    precision: str  # the bundle's: "fp16" or "fp32"
    strongly_typed: bool = False  # TensorRT 10: build the fp16 ONNX strongly typed (11 always does)
    opt_level: int = DEFAULT_OPT_LEVEL
    workspace_gib: float | None = None  # None: TensorRT's default (the GPU's memory)
    # "ampere_plus": plans that load on any GPU of compute capability 8.0+, at some speed cost.
    hardware_compatibility: str = "none"
    cache_dir: Path | None = None  # where the timing cache lives (the bundle's parent folder)
    device_id: int = 0

    def check(self) -> None:
        if self.opt_level not in OPT_LEVELS:
            raise SRError(f"--opt-level must be 0-5, got {self.opt_level}")
        if self.workspace_gib is not None and self.workspace_gib <= 0:
            raise SRError(f"--workspace must be a positive number of GiB, got {self.workspace_gib}")
        if self.hardware_compatibility not in HARDWARE_COMPATIBILITY:
            raise SRError(f"hardware compatibility must be one of {', '.join(HARDWARE_COMPATIBILITY)}")


def profile_shapes(profile: dict) -> list[tuple[str, tuple, tuple, tuple]]:
    """A manifest profile (input -> [min, opt, max]) as IOptimizationProfile.set_shape arguments."""
    shapes = []
    for name, triple in profile.items():
        lo, opt, hi = (tuple(int(d) for d in shape) for shape in triple)
        if not (len(lo) == len(opt) == len(hi)) or any(not a <= b <= c for a, b, c in zip(lo, opt, hi, strict=True)):
            raise SRError(f"input {name}: profile {lo} / {opt} / {hi} is not min <= opt <= max")
        shapes.append((name, lo, opt, hi))
    return shapes


def timing_cache_path(folder: Path, version: str, gpu: GpuInfo) -> Path:
    """One cache per TensorRT version and GPU model: timings from another GPU only mislead the tactic search."""
    slug = re.sub(r"[^a-z0-9]+", "-", gpu.name.lower()).strip("-") or "gpu"
    return folder / f".timing-cache-trt{version}-{slug}-sm{gpu.compute_capability.replace('.', '')}.bin"


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


class TensorRTEngineBuilder:
    """The bundle builder's engine builder for TensorRT: ``(onnx_file, folder, spec, profile) -> [plan]``.
    After the builds, ``target`` (the GPU) and ``precision_summaries`` (per graph) go into the manifest."""

    def __init__(self, settings: TensorRTSettings, report: Report = print):
        import tensorrt as trt

        from sr_runtime.backends.cuda_device import gpu_info

        settings.check()
        self.trt = trt
        self.settings = settings
        self.report = report
        self.version = trt.__version__
        self.typing = tensorrt_typing(settings.precision, settings.strongly_typed, self.version)
        gpu = gpu_info(settings.device_id)
        if gpu is None:
            raise SRError(
                f"TensorRT engines are built on the GPU they will run on, and CUDA sees no GPU {settings.device_id}"
            )
        self.gpu = gpu
        self.target = TargetInfo(gpu.name, gpu.compute_capability, settings.hardware_compatibility)
        self.precision_summaries: dict[str, dict] = {}
        self.logger = trt.Logger(trt.Logger.WARNING)
        cache_dir = settings.cache_dir or Path("engines")
        self.timing_cache_file = timing_cache_path(cache_dir, self.version, gpu)

    def __call__(self, onnx_file: Path, folder: Path, spec: GraphSpec, profile: dict) -> list[Path]:
        trt = self.trt
        shapes = profile_shapes(profile)
        builder = trt.Builder(self.logger)
        network, parser = self._parse(builder, onnx_file, spec)
        if self.typing.fp16_flag:
            pinned = self._pin_fp32_islands(network, spec)
            self.report(f"  {spec.name}: weakly typed fp16, {pinned} layers pinned to fp32 (norms, sigma math)")
        config = self._config(builder, shapes)
        plan = builder.build_serialized_network(network, config)
        del parser  # it holds the weights until the network is built
        if plan is None:
            raise SRError(
                f"TensorRT {self.version} could not build the {spec.name} engine (its errors are above); after "
                "out-of-memory errors try a lower --batch, or --workspace to cap the tactics' scratch memory"
            )
        _write_atomic(self.timing_cache_file, bytes(memoryview(config.get_timing_cache().serialize())))
        path = folder / f"{spec.name}.plan"
        path.write_bytes(memoryview(plan))
        self._inspect(bytes(memoryview(plan)), spec, shapes)
        return [path]

    def _parse(self, builder, onnx_file: Path, spec: GraphSpec):
        trt = self.trt
        flags = 0
        if self.typing.strongly_typed and not always_strongly_typed(self.version):
            # On 11 the flag is implied (and deprecated): pass it on 10 only.
            flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, self.logger)
        native_norm = getattr(getattr(trt, "OnnxParserFlag", None), "NATIVE_INSTANCENORM", None)
        if native_norm is not None:
            # GroupNorm exports as InstanceNormalization: a native normalization layer, not a plugin.
            parser.set_flag(native_norm)
        if not parser.parse_from_file(str(onnx_file)):  # reads the external-data file beside it too
            errors = "; ".join(str(parser.get_error(i)) for i in range(min(parser.num_errors, 3)))
            raise SRError(f"TensorRT {self.version} cannot parse {onnx_file.name}: {errors}")
        got = {network.get_input(i).name for i in range(network.num_inputs)}
        if got != {t.name for t in spec.inputs}:
            raise SRError(
                f"{onnx_file} has inputs {sorted(got)}, the {spec.name} spec {[t.name for t in spec.inputs]}"
            )
        return network, parser

    def _trt_dtype(self, tensor_spec, precision: str):
        return self.trt.float16 if str(tensor_spec.dtype(precision)) == "torch.float16" else self.trt.float32

    def _pin_fp32_islands(self, network, spec: GraphSpec) -> int:
        """Weak typing (TensorRT 10, fp32 ONNX, BuilderFlag.FP16): engine I/O as the fp16 export has it,
        and the layers fp32_islands picks pinned to fp32 (OBEY_PRECISION_CONSTRAINTS)."""
        trt = self.trt
        specs = {t.name: t for t in (*spec.inputs, *spec.outputs)}
        for tensor in [network.get_input(i) for i in range(network.num_inputs)] + [
            network.get_output(i) for i in range(network.num_outputs)
        ]:
            tensor.dtype = self._trt_dtype(specs[tensor.name], "fp16")
        floats = (trt.float32, trt.float16)
        layers = [network.get_layer(i) for i in range(network.num_layers)]
        views = []
        for layer in layers:
            inputs = [layer.get_input(j) for j in range(layer.num_inputs)]
            outputs = [layer.get_output(k) for k in range(layer.num_outputs)]
            views.append(LayerView(
                layer.name,
                layer.type.name,
                tuple(t.name for t in inputs if t is not None and t.dtype in floats),
                tuple(t.name for t in outputs),
                all(t.dtype in floats for t in outputs),
            ))
        pinned = set(fp32_layers(views, [t.name for t in spec.inputs if t.scalar]))
        for layer in layers:
            if layer.name not in pinned:
                continue
            layer.precision = trt.float32
            for k in range(layer.num_outputs):
                # Network outputs keep the I/O type set above; TensorRT converts at the boundary.
                if not layer.get_output(k).is_network_output:
                    layer.set_output_type(k, trt.float32)
        return len(pinned)

    def _config(self, builder, shapes):
        trt, s = self.trt, self.settings
        config = builder.create_builder_config()
        if s.workspace_gib is not None:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(s.workspace_gib * 2**30))
        config.builder_optimization_level = s.opt_level
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # the inspector needs layer types
        if self.typing.fp16_flag:  # TensorRT 10 only: these flags are gone in 11
            config.set_flag(trt.BuilderFlag.FP16)
            config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        if s.hardware_compatibility == "ampere_plus":
            config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
        profile = builder.create_optimization_profile()
        for name, lo, opt, hi in shapes:
            profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(profile)
        cached = self.timing_cache_file.read_bytes() if self.timing_cache_file.is_file() else b""
        cache = config.create_timing_cache(cached)
        if cache is None:  # unreadable (a truncated file): start a new one rather than fail the build
            self.report(f"WARNING: ignoring the unreadable timing cache {self.timing_cache_file}")
            cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
        return config

    def _inspect(self, plan: bytes, spec: GraphSpec, shapes) -> None:
        """Engine I/O types against the spec, and the layer precisions into ``precision_summaries``."""
        trt = self.trt
        engine = trt.Runtime(self.logger).deserialize_cuda_engine(plan)
        if engine is None:
            raise SRError(f"TensorRT cannot load the {spec.name} engine it just built")
        for t in (*spec.inputs, *spec.outputs):
            want = self._trt_dtype(t, self.settings.precision)
            if engine.get_tensor_dtype(t.name) != want:
                raise SRError(
                    f"the {spec.name} engine has {t.name} as {engine.get_tensor_dtype(t.name)}, "
                    f"the {self.settings.precision} bundle needs {want}"
                )
        # A context at the opt shapes: with dynamic shapes the inspector has no formats to report without one.
        # USER_MANAGED: nothing runs, so no activation memory is allocated for it.
        context = engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
        for name, _, opt, _ in shapes:
            context.set_input_shape(name, opt)
        inspector = engine.create_engine_inspector()
        inspector.execution_context = context
        summary = precision_summary(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
        if warning := check_precision(spec.name, self.settings.precision, summary):
            self.report(f"WARNING: {warning}")
        self.precision_summaries[spec.name] = summary
        self.report(
            f"  {spec.name}: {summary.get('layers', 0)} layers, {summary.get('fp16', 0)} fp16, "
            f"{summary.get('fp32', 0)} fp32, {summary.get('mixed', 0)} converting"
        )
