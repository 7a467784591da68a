"""``sr-export build``: a family's source -> cached ONNX graphs -> backend engines -> a bundle folder."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sr_runtime.bundle_check import sha256_file
from sr_runtime.errors import SRError
from sr_runtime.manifest import FileRecord, GraphInfo, Manifest, TensorInfo
from sr_runtime.precision import Precision
from sr_runtime.version import TOOL_VERSION

from ..atomic_folders import atomic_folder, bundle_target_problem, check_bundle_target, write_manifest
from ..families.base import DEFAULT_TILE, FamilySource
from ..graph_spec import GraphSpec
from ..onnx_export import OPSET
from ..reporting import Report
from .backends import AUTO, select_backend
from .engine_builder import BuiltEngine, EngineSettings
from .onnx_cache import export_with_fallback

ENGINES_FOLDER = Path("engines")


@dataclass(frozen=True)
class BuildOptions:
    """What every family's build takes (the family's own settings live in its source)."""

    backend: str = AUTO
    precision: Precision | None = None  # None: the backend's default
    tile: int = DEFAULT_TILE
    batch: int = 1
    output: Path | None = None
    opset: int = OPSET
    # TensorRT only (EngineSettings): strongly typed fp16 ONNX on TensorRT 10, optimization level, workspace GiB.
    strongly_typed: bool = False
    opt_level: int = 3
    workspace_gib: float | None = None
    cpu_offline: bool = False  # ONNX Runtime CPU only: the graphs saved optimised for this CPU
    winograd: bool = True  # ONNX Runtime CPU only: wide 3x3 convolutions as Winograd F(4x4, 3x3)
    fused_group_norm: bool = True  # ONNX Runtime CUDA only: GroupNorm (+ SiLU) as its fused contrib op


def _tensor_infos(tensors, precision: Precision) -> list[TensorInfo]:
    return [TensorInfo(t.name, t.precision(precision).numpy_dtype.name, list(t.dims)) for t in tensors]


def _record(file: Path) -> FileRecord:
    return FileRecord(file.name, sha256_file(file), file.stat().st_size)


def _graph_info(spec: GraphSpec, built: BuiltEngine, precision: Precision, profile: dict) -> GraphInfo:
    engine, *data = (_record(f) for f in built.files)
    return GraphInfo(
        file=engine.file,
        sha256=engine.sha256,
        size=engine.size,
        inputs=_tensor_infos(spec.inputs, precision),
        outputs=_tensor_infos(spec.outputs, precision),
        profile=profile,
        precision_summary=built.precision_summary,
        rewrites=built.rewrites,
        data_files=data,
    )


def default_bundle_path(stem: str, backend: str, precision: Precision) -> Path:
    return ENGINES_FOLDER / f"{stem}-{backend}-{precision.value}"


def build_bundle(source: FamilySource, opts: BuildOptions, report: Report = print) -> Path:
    backend = select_backend(opts.backend)
    precision = backend.build_precision(opts.precision)
    if opts.batch < 1:
        raise SRError(f"--batch must be at least 1, got {opts.batch}")
    if opts.cpu_offline and backend.name != "onnxruntime-cpu":
        raise SRError(f"--optimize-for-this-cpu is for --backend onnxruntime-cpu bundles, not {backend}")
    if opts.output is not None:
        check_bundle_target(opts.output)  # before any work; checked again when the bundle is swapped in
    plan = source.plan_build(opts.tile, opts.batch, report)
    if precision is Precision.BF16 and plan.bf16_problem:
        raise SRError(f"{plan.stem} cannot be built at bf16: {plan.bf16_problem}")
    report(f"backend {backend}, precision {precision.value}, tile {opts.tile}, batch {opts.batch}, {plan.summary}")
    exported = backend.onnx_precision(precision, opts.strongly_typed)
    onnx_dir, exported, fallback = export_with_fallback(source, plan, exported, opts.tile, opts.opset,
                                                        backend.attention, report)
    precision = Precision.FP32 if fallback else precision
    final = opts.output or default_bundle_path(plan.stem, backend.name, precision)
    settings = EngineSettings(precision, final.parent, opts.strongly_typed, opts.opt_level, opts.workspace_gib,
                              opts.cpu_offline, opts.winograd, opts.fused_group_norm)
    builder = backend.builder(settings, report)
    if final.exists():
        report(f"replacing the bundle {final}")
    with atomic_folder(final, bundle_target_problem) as tmp:
        graphs = {}
        for spec in plan.graphs:
            report(f"building the {backend} engine for {spec.name}")
            profile = plan.profile(spec, opts.batch)
            built = builder.build(onnx_dir / f"{spec.name}.onnx", tmp, spec, profile)
            graphs[spec.name] = _graph_info(spec, built, precision, profile)
        files = [_record(f) for f in plan.write_files(tmp)]
        write_manifest(
            tmp,
            Manifest(
                tool_version=TOOL_VERSION,
                backend=backend.name,
                backend_version=backend.version(),
                precision=precision,
                demo=source.demo,
                pipeline=plan.pipeline,
                section=plan.section,
                graphs=graphs,
                files=files,
                checkpoints=source.checkpoints,
                target=builder.target,
                cpu_target=builder.cpu_target,
                created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                precision_fallback=fallback,
            ),
        )
    report(f"bundle written to {final}")
    return final
