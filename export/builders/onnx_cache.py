"""The exported ONNX graphs of a build, cached by what they depend on and reused across builds."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from sr_runtime.precision import Precision
from sr_runtime.version import TOOL_VERSION

from ..attention import Attention
from ..cache import cache_key, cache_root, cached_folder
from ..families.base import BuildPlan, FamilySource
from ..onnx_export import export_graph, fp16_overflow
from ..reporting import Report

log = logging.getLogger(__name__)
FP16_CHECK = "fp16_check.json"  # in an fp16 cache folder: the overflow check's verdict


def onnx_cache_dir(source: FamilySource, precision: Precision, tile: int, opset: int, attention: Attention) -> Path:
    key = cache_key({"tool": TOOL_VERSION, "weights": source.fingerprint(), "precision": precision.value, "tile": tile,
                     "opset": opset, "attention": attention.value})
    return cache_root() / "onnx" / key[:24]


def export_graphs(source: FamilySource, plan: BuildPlan, precision: Precision, tile: int, opset: int,
                  attention: Attention, report: Report) -> Path:
    """The family's ONNX graphs, exported once per (weights, precision, tile, opset, attention)."""

    def export_all(folder: Path) -> None:
        for i, spec in enumerate(plan.graphs, 1):
            report(f"[{i}/{len(plan.graphs)}] exporting {spec.name} ({precision.value}) to ONNX")
            export_graph(spec, source.components, precision, folder / f"{spec.name}.onnx", plan.dims(1), opset,
                         attention)

    return cached_folder(onnx_cache_dir(source, precision, tile, opset, attention), export_all, report,
                         "the cached ONNX graphs")


def _fp16_problem(folder: Path, plan: BuildPlan) -> str | None:
    """Why the cached fp16 graphs are unusable (overflow on their sample inputs), or None; the verdict is
    stored beside them so a cache hit does not rerun the graphs."""
    verdict = folder / FP16_CHECK
    if verdict.is_file():
        return json.loads(verdict.read_text())["problem"]
    try:
        import onnxruntime  # noqa: F401  (a TensorRT-only install may lack it)
    except ImportError:
        log.warning("onnxruntime is not installed: the fp16 graphs are not checked for overflow")
        return None
    problem = None
    for spec in plan.graphs:
        if problem := fp16_overflow(folder / f"{spec.name}.onnx", spec, plan.dims(1)):
            break
    partial = folder / f"{FP16_CHECK}.{os.getpid()}.partial"
    partial.write_text(json.dumps({"problem": problem}))
    os.replace(partial, verdict)
    return problem


def export_with_fallback(source: FamilySource, plan: BuildPlan, precision: Precision, tile: int, opset: int,
                         attention: Attention, report: Report) -> tuple[Path, Precision, str | None]:
    """``export_graphs``, then for families that ask for it (``fp16_fallback``) the fp16 overflow check:
    (ONNX folder, the precision exported, why fp16 was given up or None)."""
    folder = export_graphs(source, plan, precision, tile, opset, attention, report)
    if precision is not Precision.FP16 or not plan.fp16_fallback:
        return folder, precision, None
    problem = _fp16_problem(folder, plan)
    if problem is None:
        return folder, precision, None
    reason = f"fp16 overflows on the sample input ({problem})"
    log.warning("%s: building fp32 engines instead", reason)
    return export_graphs(source, plan, Precision.FP32, tile, opset, attention, report), Precision.FP32, reason
