"""Bundles for the benchmark: built once into the cache and opened with ONNX Runtime, or with OpenVINO,
a peer a user might pick instead, running the very same ONNX graphs (exported with plain attention:
ONNX Runtime's fused attention node is its own contrib op, which OpenVINO does not read)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from sr_runtime.backends.base import EngineSession, HostChain, RuntimeOptions
from sr_runtime.manifest import GraphInfo, read_manifest
from sr_runtime.pipeline import Upscaler, open_family
from sr_runtime.precision import Precision
from sr_runtime.version import TOOL_VERSION

from ..attention import Attention
from ..builders.backends import BACKENDS, EngineBackend
from ..builders.bundle_builder import BuildOptions
from ..families.base import FamilySource
from ..reporting import Report
from .bundles import cached_bundle
from .family import BenchBackend, Peer, backend_label


class OpenVinoSession(EngineSession):
    def __init__(self, name: str, info: GraphInfo, compiled):
        super().__init__(name, info)
        self.compiled = compiled

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.compiled(self.host_inputs(inputs))
        return {t.name: np.asarray(results[t.name]) for t in self.info.outputs}


def openvino_upscaler(bundle: Path) -> Upscaler:
    """The bundle's ONNX graphs compiled by OpenVINO for the CPU, chained like ONNX Runtime's CPU engines."""
    import openvino as ov

    manifest = read_manifest(bundle, TOOL_VERSION)
    core = ov.Core()
    # OpenVINO computes in bf16 where the CPU has bf16 instructions (AVX-512 BF16, AMX) unless told
    # otherwise: held to fp32, the bundle's precision, so that its column compares like with like.
    fp32 = {"INFERENCE_PRECISION_HINT": "f32"}
    sessions = {name: OpenVinoSession(name, info, core.compile_model(str(bundle / info.file), "CPU", fp32))
                for name, info in manifest.graphs.items()}
    family = open_family(bundle, manifest)
    return Upscaler(manifest, HostChain(sessions, lru_cache(maxsize=8)(family.plan)), sessions, family)


@dataclass(frozen=True)
class Variant:
    """How a bundle is built and opened, beside the default."""

    options: RuntimeOptions = RuntimeOptions()
    fused_group_norm: bool = True  # ONNX Runtime CUDA: GroupNorm built as its fused kernel (the default)


def bench_variants(backend: BenchBackend) -> dict[str, Variant]:
    """What is timed beside the default run of ``backend``'s bundle: CUDA graphs on GPU engines, and on ONNX
    Runtime CUDA the bundle built without the GroupNorm fusion, with and without them. (ONNX Runtime's
    channels-last kernels, ``prefer_nhwc``, were timed on an H200 and left out: slower with the fusion and
    without it, and CUDA graphs refuse them, as a few of their nodes fall back to the CPU.)"""
    if not isinstance(backend, EngineBackend) or backend.device != "cuda":
        return {}
    graphs = RuntimeOptions(cuda_graph=True)
    variants = {"CUDA graphs": Variant(graphs)}
    if backend is BACKENDS["onnxruntime-cuda"]:
        variants |= {"GroupNorm unfused": Variant(fused_group_norm=False),
                     "GroupNorm unfused, CUDA graphs": Variant(graphs, fused_group_norm=False)}
    return variants


def variant_openers(source: FamilySource, backend: BenchBackend, precision: Precision, tile: int, name: str,
                    report: Report, run: Callable[[Upscaler], object]) -> dict[str, Callable[[], Callable[[], object]]]:
    """``Runner.variants`` for ``backend``: label -> opens ``source``'s bundle as that variant and returns
    ``run`` on it. Batch 1: with CUDA graphs every call runs at the bundle's batch, and the Table 7 image is
    one tile."""
    def opener(variant: Variant) -> Callable[[], Callable[[], object]]:
        def open_variant() -> Callable[[], object]:
            upscaler = bench_upscaler(source, backend, precision, tile, 1, name, report, variant)
            return lambda: run(upscaler)

        return open_variant

    return {label: opener(variant) for label, variant in bench_variants(backend).items()}


def bench_upscaler(source: FamilySource, backend: BenchBackend, precision: Precision, tile: int, batch: int,
                   name: str, report: Report, variant: Variant = Variant()) -> Upscaler:
    """``source``'s bundle for ``backend`` (built once into the cache) as ``variant``."""
    engine = BACKENDS["onnxruntime-cpu"] if backend is Peer.OPENVINO else backend
    opts = BuildOptions(backend=engine.name, precision=precision, tile=tile, batch=batch,
                        attention=Attention.PLAIN if backend is Peer.OPENVINO else None,
                        winograd=backend is not Peer.OPENVINO,  # OpenVINO picks its own convolution algorithms
                        fused_group_norm=variant.fused_group_norm)
    bundle = cached_bundle(source, opts, f"{name}-{backend_label(backend)}-{precision.value}-b{batch}", report)
    return openvino_upscaler(bundle) if backend is Peer.OPENVINO else Upscaler.from_bundle(bundle, options=variant.options)
