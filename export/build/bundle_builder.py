"""``sr-export build``: checkpoints -> cached ONNX graphs -> backend engines -> a bundle folder."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sr_runtime.bundle_check import sha256_file
from sr_runtime.errors import SRError
from sr_runtime.manifest import FileRecord, GraphInfo, Manifest, TensorInfo
from sr_runtime.version import TOOL_VERSION

from ..bundle import atomic_folder, link_or_copy, write_manifest
from ..families import FamilyBuild
from ..graphs import GraphSpec
from ..onnx_export import OPSET, export_graph, fp16_overflow
from ..sources import ModelSource, cache_root
from .precision import onnx_attention, onnx_precision
from .select import default_precision, select_backend

Report = Callable[[str], None]
log = logging.getLogger(__name__)
FP16_CHECK = "fp16_check.json"  # in an fp16 cache folder: the overflow check's verdict


@dataclass(frozen=True)
class BuildOptions:
    steps: int
    cli_timesteps: tuple[int, ...]
    backend: str = "auto"
    precision: str | None = None
    tile: int = 128
    batch: int = 1
    output: Path | None = None
    opset: int = OPSET
    # TensorRT only (tensorrt_builder.TensorRTSettings): strongly typed fp16 ONNX on TensorRT 10, the builder
    # optimization level (0-5), the tactics' workspace limit in GiB (None: TensorRT's default).
    strongly_typed: bool = False
    opt_level: int = 3
    workspace_gib: float | None = None


def _onnx_cache_dir(source: ModelSource, precision: str, tile: int, opset: int, attention: str) -> Path:
    key = json.dumps(
        {"tool": TOOL_VERSION, "weights": source.fingerprint(), "precision": precision, "tile": tile, "opset": opset,
         "attention": attention},
        sort_keys=True,
    )
    return cache_root() / "onnx" / hashlib.sha256(key.encode()).hexdigest()[:24]


def export_graphs(
    source: ModelSource, plan: FamilyBuild, precision: str, tile: int, opset: int, report: Report,
    attention: str = "plain",
) -> Path:
    """The family's ONNX graphs, exported once per (weights, precision, tile, opset, attention) and reused."""
    folder = _onnx_cache_dir(source, precision, tile, opset, attention)
    if (folder / "complete").is_file():
        report(f"reusing cached ONNX graphs from {folder}")
        return folder
    with atomic_folder(folder) as tmp:
        for i, spec in enumerate(plan.graphs, 1):
            report(f"[{i}/{len(plan.graphs)}] exporting {spec.name} ({precision}) to ONNX")
            export_graph(spec, source.components, precision, tmp / f"{spec.name}.onnx", tile=tile, opset=opset,
                         dims=plan.sizes(1), attention=attention)
        (tmp / "complete").write_text("ok\n")
    return folder


def _fp16_problem(folder: Path, plan: FamilyBuild) -> str | None:
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
        if problem := fp16_overflow(folder / f"{spec.name}.onnx", spec, plan.sizes(1)):
            break
    partial = folder / f"{FP16_CHECK}.partial"
    partial.write_text(json.dumps({"problem": problem}))
    os.replace(partial, verdict)
    return problem


def export_with_fallback(
    source: ModelSource, plan: FamilyBuild, precision: str, tile: int, opset: int, report: Report, attention: str
) -> tuple[Path, str, str | None]:
    """``export_graphs``, then for families that ask for it (``fp16_fallback``) the fp16 overflow check:
    (ONNX folder, the precision exported, why fp16 was given up or None)."""
    folder = export_graphs(source, plan, precision, tile, opset, report, attention)
    if precision != "fp16" or not plan.fp16_fallback:
        return folder, precision, None
    problem = _fp16_problem(folder, plan)
    if problem is None:
        return folder, precision, None
    reason = f"fp16 overflows on the sample input ({problem})"
    log.warning("%s: building fp32 engines instead", reason)
    return export_graphs(source, plan, "fp32", tile, opset, report, attention), "fp32", reason


def _tensor_infos(tensors, precision: str) -> list[TensorInfo]:
    return [TensorInfo(t.name, str(t.dtype(precision)).removeprefix("torch."), list(t.dims)) for t in tensors]


def _record(file: Path) -> FileRecord:
    return FileRecord(file.name, sha256_file(file), file.stat().st_size)


def _graph_info(spec: GraphSpec, files: list[Path], precision: str, profile: dict) -> GraphInfo:
    """``files``: the engine file, then the files it loads at run time (external weights)."""
    engine, *data = (_record(f) for f in files)
    return GraphInfo(
        file=engine.file,
        sha256=engine.sha256,
        size=engine.size,
        inputs=_tensor_infos(spec.inputs, precision),
        outputs=_tensor_infos(spec.outputs, precision),
        profile=profile,
        data_files=data,
    )


def _profile(spec: GraphSpec, plan: FamilyBuild, batch: int) -> dict:
    """One profile per graph: the bundle's tile size, batch 1 .. the build's batch."""
    return spec.profile(plan.sizes(1), plan.sizes(batch), plan.sizes(batch))


def default_bundle_path(stem: str, backend: str, precision: str) -> Path:
    return Path("engines") / f"{stem}-{backend}-{precision}"


def build_bundle(source: ModelSource, opts: BuildOptions, report: Report = print) -> Path:
    backend = select_backend(opts.backend)
    precision = opts.precision or default_precision(backend)
    if opts.batch < 1:
        raise SRError(f"--batch must be at least 1, got {opts.batch}")
    plan = source.plan_build(opts, report)  # the family's graphs, constants and files (families.py)
    report(f"backend {backend}, precision {precision}, tile {opts.tile}, batch {opts.batch}, {plan.summary}")
    exported = onnx_precision(backend, precision, opts.strongly_typed)  # TensorRT 10's fp16 builds from fp32
    onnx_dir, exported, fallback = export_with_fallback(
        source, plan, exported, opts.tile, opts.opset, report, onnx_attention(backend)
    )
    precision = "fp32" if fallback else precision
    final = opts.output or default_bundle_path(plan.stem, backend, precision)
    engine_builder = _engine_builder(backend, opts, precision, final.parent, report)
    with atomic_folder(final) as tmp:
        graphs = {}
        for spec in plan.graphs:
            report(f"building the {backend} engine for {spec.name}")
            profile = _profile(spec, plan, opts.batch)
            files = engine_builder(onnx_dir / f"{spec.name}.onnx", tmp, spec, profile)
            graphs[spec.name] = _graph_info(spec, files, precision, profile)
            graphs[spec.name].precision_summary = getattr(engine_builder, "precision_summaries", {}).get(spec.name, {})
        plan.write_files(tmp)
        write_manifest(
            tmp,
            Manifest(
                tool_version=TOOL_VERSION,
                backend=backend,
                backend_version=_backend_version(backend),
                precision=precision,
                demo=source.demo,
                pipeline=plan.pipeline,
                graphs=graphs,
                checkpoints=source.checkpoints,
                created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                precision_fallback=fallback,
                target=getattr(engine_builder, "target", None),  # TensorRT: the GPU the plans are for
            ),
        )
    report(f"bundle written to {final}")
    return final


def _copy_onnx(onnx_file: Path, folder: Path, spec: GraphSpec, profile: dict) -> list[Path]:
    """ONNX Runtime bundles carry the cleaned ONNX graph and its external data file, if any."""
    files = []
    for src in (onnx_file, onnx_file.with_name(onnx_file.name + ".data")):
        if src.exists():
            link_or_copy(src, folder / src.name)
            files.append(folder / src.name)
    return files


def _engine_builder(backend: str, opts: BuildOptions, precision: str, cache_dir: Path, report: Report):
    if backend.startswith("onnxruntime"):
        return _copy_onnx
    if backend == "tensorrt":
        from .tensorrt_builder import TensorRTEngineBuilder, TensorRTSettings

        settings = TensorRTSettings(precision, opts.strongly_typed, opts.opt_level, opts.workspace_gib,
                                    cache_dir=cache_dir)
        return TensorRTEngineBuilder(settings, report)
    raise SRError(f"engine building for {backend} is not implemented yet")


def _backend_version(backend: str) -> str:
    if backend == "tensorrt":
        from .precision import tensorrt_version

        return tensorrt_version()
    import onnxruntime

    return onnxruntime.__version__
