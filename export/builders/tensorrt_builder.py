"""``sr-export build --backend tensorrt``: ONNX graph -> TensorRT plan, one per graph spec, through
polygraphy's loaders.

Per graph: polygraphy parses the ONNX (``NetworkFromOnnxPath``, strongly typed as
``tensorrt_typing`` says), on TensorRT 10's weakly typed fp16 path pins the fp32 islands
(``PostprocessNetwork``), configures the builder (``CreateConfig``: one optimization profile from the
spec's min/opt/max shapes, FP16 + obeyed precision constraints where weakly typed, workspace limit,
optimization level, detailed profiling for the inspector) and builds the serialized plan
(``EngineBytesFromNetwork``), loading and saving the timing cache beside the bundle folder
(``engines/.timing-cache-trt<version>-<gpu>.bin``) under polygraphy's file lock, so concurrent builds
merge their timings and rebuilds on the same GPU skip the kernel timing. After each build the engine
inspector lists the layer precisions; an engine asked for in fp16 that computes nothing in fp16
fails the build.

tensorrt, polygraphy's TensorRT backend and cuda-python are imported when a builder is made, so the
rules here are tested without them.
"""

from __future__ import annotations

import re
from pathlib import Path

from sr_runtime.backends.base import GpuInfo
from sr_runtime.backends.tensorrt_compat import always_strongly_typed
from sr_runtime.errors import SRError
from sr_runtime.manifest import TargetInfo
from sr_runtime.precision import Precision

from ..graph_spec import GraphSpec
from ..reporting import Report
from .engine_builder import BuiltEngine, EngineBuilder, EngineSettings
from .fp32_islands import LayerView, fp32_layers
from .layer_precisions import check_precision, precision_summary
from .tensorrt_typing import TensorRTTyping, tensorrt_typing

OPT_LEVELS = range(0, 6)
GIB = 2**30


def check_settings(settings: EngineSettings) -> None:
    if settings.opt_level not in OPT_LEVELS:
        raise SRError(f"--opt-level must be 0-5, got {settings.opt_level}")
    if settings.workspace_gib is not None and settings.workspace_gib <= 0:
        raise SRError(f"--workspace must be a positive number of GiB, got {settings.workspace_gib}")


def profile_shapes(profile: dict) -> list[tuple[str, tuple, tuple, tuple]]:
    """A manifest profile (input -> [min, opt, max]) as (name, min, opt, max), checked."""
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


def polygraphy_profile(shapes):
    """The one optimization profile of a graph, as polygraphy's ``Profile``."""
    from polygraphy.backend.trt import Profile

    profile = Profile()
    for name, lo, opt, hi in shapes:
        profile.add(name, lo, opt, hi)
    return profile


def create_config(settings: EngineSettings, typing: TensorRTTyping, shapes, timing_cache: Path):
    """polygraphy's ``CreateConfig`` for one graph (a loader: TensorRT is only touched when it runs)."""
    import tensorrt as trt
    from polygraphy.backend.trt import CreateConfig

    workspace = None
    if settings.workspace_gib is not None:
        workspace = {trt.MemoryPoolType.WORKSPACE: int(settings.workspace_gib * GIB)}
    return CreateConfig(
        fp16=typing.fp16_flag or None,  # TensorRT 10 only: the flag is gone in 11
        precision_constraints="obey" if typing.fp16_flag else None,
        profiles=[polygraphy_profile(shapes)],
        memory_pool_limits=workspace,
        builder_optimization_level=settings.opt_level,
        profiling_verbosity=trt.ProfilingVerbosity.DETAILED,  # the inspector needs layer types
        load_timing_cache=str(timing_cache),
    )


class TensorRTEngineBuilder(EngineBuilder):
    """Builds each graph's plan on GPU 0; ``target`` records that GPU for the manifest."""

    def __init__(self, settings: EngineSettings, report: Report = print):
        import tensorrt as trt

        from sr_runtime.backends.cuda_device import gpu_info

        check_settings(settings)
        self.trt = trt
        self.settings = settings
        self.report = report
        self.version = trt.__version__
        self.typing = tensorrt_typing(settings.precision, settings.strongly_typed, self.version)
        gpu = gpu_info(0)
        if gpu is None:
            raise SRError("TensorRT engines are built on the GPU they will run on, and CUDA sees no GPU")
        self.target = TargetInfo(gpu.name, gpu.compute_capability)
        self.timing_cache_file = timing_cache_path(settings.cache_dir, self.version, gpu)

    def build(self, onnx_file: Path, folder: Path, spec: GraphSpec, profile: dict) -> BuiltEngine:
        from polygraphy.backend.trt import EngineBytesFromNetwork, NetworkFromOnnxPath, PostprocessNetwork
        from polygraphy.exception import PolygraphyException

        shapes = profile_shapes(profile)
        native_norm = getattr(getattr(self.trt, "OnnxParserFlag", None), "NATIVE_INSTANCENORM", None)
        network = NetworkFromOnnxPath(
            str(onnx_file),  # parse_from_file: reads the external-data file beside it too
            # GroupNorm exports as InstanceNormalization: a native normalization layer, not a plugin.
            flags=[native_norm] if native_norm is not None else None,
            # On 11 the flag is implied (and deprecated): pass it on 10 only.
            strongly_typed=self.typing.strongly_typed and not always_strongly_typed(self.version),
        )
        network = PostprocessNetwork(network, lambda network: self._check_inputs(network, spec), "input check")
        if self.typing.fp16_flag:
            network = PostprocessNetwork(network, lambda network: self._pin_fp32_islands(network, spec), "fp32 islands")
        self.timing_cache_file.parent.mkdir(parents=True, exist_ok=True)
        config = create_config(self.settings, self.typing, shapes, self.timing_cache_file)
        try:
            plan = EngineBytesFromNetwork(network, config=config, save_timing_cache=str(self.timing_cache_file))()
        except PolygraphyException as err:
            raise SRError(
                f"TensorRT {self.version} could not build the {spec.name} engine ({str(err).splitlines()[0]}; its errors "
                "are above); after out-of-memory errors try a lower --batch, or --workspace to cap the tactics' memory"
            ) from err
        path = folder / f"{spec.name}.plan"
        path.write_bytes(bytes(memoryview(plan)))
        return BuiltEngine([path], self._inspect(bytes(memoryview(plan)), spec, shapes))

    def _check_inputs(self, network, spec: GraphSpec) -> None:
        got = {network.get_input(i).name for i in range(network.num_inputs)}
        if got != {t.name for t in spec.inputs}:
            raise SRError(f"the {spec.name} ONNX has inputs {sorted(got)}, its spec {[t.name for t in spec.inputs]}")

    def _trt_dtype(self, tensor, precision: Precision):
        return self.trt.float16 if tensor.precision(precision) is Precision.FP16 else self.trt.float32

    def _pin_fp32_islands(self, network, spec: GraphSpec) -> None:
        """Weak typing (TensorRT 10, fp32 ONNX, BuilderFlag.FP16): engine I/O as the fp16 export has it,
        and the layers fp32_islands picks pinned to fp32 (obeyed precision constraints)."""
        trt = self.trt
        tensors = {t.name: t for t in spec.io.tensors}
        for tensor in [network.get_input(i) for i in range(network.num_inputs)] + [
            network.get_output(i) for i in range(network.num_outputs)
        ]:
            tensor.dtype = self._trt_dtype(tensors[tensor.name], Precision.FP16)
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
        self.report(f"  {spec.name}: weakly typed fp16, {len(pinned)} layers pinned to fp32 (norms, sigma math)")

    def _inspect(self, plan: bytes, spec: GraphSpec, shapes) -> dict:
        """Engine I/O types against the spec; the layer precisions for the manifest."""
        trt = self.trt
        engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan)
        if engine is None:
            raise SRError(f"TensorRT cannot load the {spec.name} engine it just built")
        for t in spec.io.tensors:
            want = self._trt_dtype(t, self.settings.precision)
            if engine.get_tensor_dtype(t.name) != want:
                raise SRError(
                    f"the {spec.name} engine has {t.name} as {engine.get_tensor_dtype(t.name)}, "
                    f"the {self.settings.precision.value} bundle needs {want}"
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
        self.report(
            f"  {spec.name}: {summary.get('layers', 0)} layers, {summary.get('fp16', 0)} fp16, "
            f"{summary.get('fp32', 0)} fp32, {summary.get('mixed', 0)} converting"
        )
        return summary
