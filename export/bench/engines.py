"""The engine rows of the benchmark: each family's bundle for a backend, built once into the cache and opened
as the default run or as a variant (runtime and build options timed beside it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sr_runtime.backends.base import RuntimeOptions
from sr_runtime.pipeline import Upscaler
from sr_runtime.precision import Precision

from ..builders.backends import BACKENDS, EngineBackend
from ..builders.bundle_builder import BuildOptions
from ..families.base import FamilySource
from ..reporting import Report
from .bundles import cached_bundle
from .family import VariantRun


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


def variant_runs(source: FamilySource, backend: EngineBackend, precision: Precision, tile: int, name: str,
                 report: Report, run: Callable[[Upscaler], object]) -> dict[str, VariantRun]:
    """``Runner.variants`` for ``backend``: label -> ``source``'s bundle as that variant, timing ``run`` on it.
    Batch 1: with CUDA graphs every call runs at the bundle's batch, and the Table 7 image is one tile."""
    def variant_run(variant: Variant) -> VariantRun:
        def open_bundle(bundle: Path) -> Callable[[], object]:
            upscaler = Upscaler.from_bundle(bundle, options=variant.options)
            return lambda: run(upscaler)

        return VariantRun(lambda: bench_bundle(source, backend, precision, tile, 1, name, report, variant), open_bundle)

    return {label: variant_run(variant) for label, variant in bench_variants(backend).items()}


def bench_bundle(source: FamilySource, backend: EngineBackend, precision: Precision, tile: int, batch: int,
                 name: str, report: Report, variant: Variant = Variant()) -> Path:
    """``source``'s bundle for ``backend`` built as ``variant``, once, into the cache."""
    opts = BuildOptions(backend=backend.name, precision=precision, tile=tile, batch=batch,
                        fused_group_norm=variant.fused_group_norm, cpu_offline=variant.cpu_offline)
    return cached_bundle(source, opts, f"{name}-{backend.name}-{precision.value}-b{batch}", report)


def bench_upscaler(source: FamilySource, backend: EngineBackend, precision: Precision, tile: int, batch: int,
                   name: str, report: Report) -> Upscaler:
    """``source``'s default bundle for ``backend``, opened."""
    return Upscaler.from_bundle(bench_bundle(source, backend, precision, tile, batch, name, report))
