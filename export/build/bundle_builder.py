"""``sr-export build``: checkpoints -> cached ONNX graphs -> backend engines -> a bundle folder."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from sr_runtime.bundle_check import sha256_file
from sr_runtime.errors import SRError
from sr_runtime.manifest import PROMPT_EMBEDS_NAME, FileRecord, GraphInfo, Manifest, PipelineInfo, TensorInfo
from sr_runtime.upscale import LATENT_CHANNELS, SCALE, check_tile
from sr_runtime.version import TOOL_VERSION

from ..bundle import atomic_folder, link_or_copy, write_manifest
from ..graphs import INVSR_GRAPHS, GraphSpec, sizes
from ..models.sd_turbo import POSITIVE_PROMPT, encode_prompt
from ..onnx_export import OPSET, export_graph
from ..schedule import Schedule, build_schedule, resolve_timesteps
from ..sources import ModelSource, cache_root
from .select import default_precision, select_backend

Report = Callable[[str], None]


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


def _onnx_cache_dir(source: ModelSource, precision: str, tile: int, opset: int) -> Path:
    key = json.dumps(
        {"tool": TOOL_VERSION, "weights": source.fingerprint(), "precision": precision, "tile": tile, "opset": opset},
        sort_keys=True,
    )
    return cache_root() / "onnx" / hashlib.sha256(key.encode()).hexdigest()[:24]


def export_graphs(source: ModelSource, precision: str, tile: int, opset: int, report: Report) -> Path:
    """The four ONNX graphs, exported once per (weights, precision, tile, opset) and then reused."""
    folder = _onnx_cache_dir(source, precision, tile, opset)
    if (folder / "complete").is_file():
        report(f"reusing cached ONNX graphs from {folder}")
        return folder
    with atomic_folder(folder) as tmp:
        for i, spec in enumerate(INVSR_GRAPHS, 1):
            report(f"[{i}/{len(INVSR_GRAPHS)}] exporting {spec.name} ({precision}) to ONNX")
            export_graph(spec, source.components, precision, tmp / f"{spec.name}.onnx", tile=tile, opset=opset)
        (tmp / "complete").write_text("ok\n")
    return folder


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


def _profile(spec: GraphSpec, tile: int, batch: int, embed: int) -> dict:
    """One profile per graph: the bundle's tile size, batch 1 .. the build's batch."""
    return spec.profile(sizes(1, tile, embed), sizes(batch, tile, embed), sizes(batch, tile, embed))


def _pipeline_info(schedule: Schedule, source: ModelSource, opts: BuildOptions, embed_shape) -> PipelineInfo:
    return PipelineInfo(
        family="invsr",
        scale=SCALE,
        tile=opts.tile,
        batch=opts.batch,
        latent_channels=LATENT_CHANNELS,
        latent_scale=source.components.latent_scale,
        cli_timesteps=list(schedule.cli_timesteps),
        timesteps=list(schedule.timesteps),
        sigmas=list(schedule.sigmas),
        prompt=POSITIVE_PROMPT,
        embed_shape=list(embed_shape),
    )


def default_bundle_path(source: ModelSource, steps: int, backend: str, precision: str) -> Path:
    return Path("engines") / f"{source.name}-s{steps}-{backend}-{precision}"


def build_bundle(source: ModelSource, opts: BuildOptions, report: Report = print) -> Path:
    backend = select_backend(opts.backend)
    precision = opts.precision or default_precision(backend)
    check_tile(opts.tile)
    if opts.batch < 1:
        raise SRError(f"--batch must be at least 1, got {opts.batch}")
    schedule = build_schedule(source.components.scheduler_config, resolve_timesteps(opts.steps, opts.cli_timesteps))
    report(f"backend {backend}, precision {precision}, tile {opts.tile}, batch {opts.batch}, "
           f"timesteps {list(schedule.cli_timesteps)}")
    onnx_dir = export_graphs(source, precision, opts.tile, opts.opset, report)
    import torch

    with torch.inference_mode():
        embeds = encode_prompt(source.components.sd_turbo).float().cpu().numpy()
    final = opts.output or default_bundle_path(source, schedule.steps, backend, precision)
    engine_builder = _engine_builder(backend)
    with atomic_folder(final) as tmp:
        graphs = {}
        for spec in INVSR_GRAPHS:
            report(f"building the {backend} engine for {spec.name}")
            profile = _profile(spec, opts.tile, opts.batch, embeds.shape[-1])
            files = engine_builder(onnx_dir / f"{spec.name}.onnx", tmp, spec, profile)
            graphs[spec.name] = _graph_info(spec, files, precision, profile)
        np.save(tmp / PROMPT_EMBEDS_NAME, embeds)
        write_manifest(
            tmp,
            Manifest(
                tool_version=TOOL_VERSION,
                backend=backend,
                backend_version=_backend_version(backend),
                precision=precision,
                demo=source.demo,
                pipeline=_pipeline_info(schedule, source, opts, embeds.shape),
                graphs=graphs,
                checkpoints=source.checkpoints,
                created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
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


def _engine_builder(backend: str):
    if backend.startswith("onnxruntime"):
        return _copy_onnx
    raise SRError(f"engine building for {backend} is not implemented yet")


def _backend_version(backend: str) -> str:
    import onnxruntime

    return onnxruntime.__version__
