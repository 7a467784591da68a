"""The engine rows of the benchmark: each family's bundle for a backend, built once into the cache and opened
as the default run or as a variant (runtime and build options timed beside it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sr_runtime.backends.base import RuntimeOptions
from sr_runtime.pipeline import Upscaler
from sr_runtime.precision import Precision

from ..builders.backends import BACKENDS, EngineBackend
from ..builders.bundle_builder import BuildOptions
from ..families.base import FamilySource
from ..reporting import Report
from .bundles import cached_bundle


@dataclass(frozen=True)
class Variant:
    """How a bundle is built and opened, beside the default."""

    options: RuntimeOptions = RuntimeOptions()
    fused_group_norm: bool = True  # ONNX Runtime CUDA: GroupNorm built as its fused kernel (the default)
    cpu_offline: bool = False  # ONNX Runtime CPU: the graphs saved optimised for this CPU


def bench_variants(backend: EngineBackend) -> dict[str, Variant]:
    """What is timed beside the default run of ``backend``'s bundle: on ONNX Runtime CPU the bundle saved
    optimised for this CPU (its weights are then mapped from the files, not copied); CUDA graphs on GPU engines,
    and on ONNX Runtime CUDA the bundle built without the GroupNorm fusion, with and without them. (ONNX
    Runtime's channels-last kernels, ``prefer_nhwc``, were timed on an H200 and left out: slower with the
    fusion and without it, and CUDA graphs refuse them, as a few of their nodes fall back to the CPU.)"""
    if backend is BACKENDS["onnxruntime-cpu"]:
        return {"optimised for this CPU": Variant(cpu_offline=True)}
    if backend.device != "cuda":
        return {}
    graphs = RuntimeOptions(cuda_graph=True)
    variants = {"CUDA graphs": Variant(graphs)}
    if backend is BACKENDS["onnxruntime-cuda"]:
        variants |= {"GroupNorm unfused": Variant(fused_group_norm=False),
                     "GroupNorm unfused, CUDA graphs": Variant(graphs, fused_group_norm=False)}
    return variants


def variant_openers(source: FamilySource, backend: EngineBackend, precision: Precision, tile: int, name: str,
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


def bench_upscaler(source: FamilySource, backend: EngineBackend, precision: Precision, tile: int, batch: int,
                   name: str, report: Report, variant: Variant = Variant()) -> Upscaler:
    """``source``'s bundle for ``backend`` (built once into the cache) as ``variant``."""
    opts = BuildOptions(backend=backend.name, precision=precision, tile=tile, batch=batch,
                        fused_group_norm=variant.fused_group_norm, cpu_offline=variant.cpu_offline)
    bundle = cached_bundle(source, opts, f"{name}-{backend.name}-{precision.value}-b{batch}", report)
    return Upscaler.from_bundle(bundle, options=variant.options)
