"""What an S3Diff build is made from (the user's checkpoints or the built-in demo model), and its plan: the
graphs (the four stages and the tiled VAE's segments), the manifest section and the prompt embeddings."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sr_runtime.checks import is_int
from sr_runtime.errors import SRError
from sr_runtime.families.s3diff.graphs import dims
from sr_runtime.families.s3diff.section import PAD_MULTIPLE, SCALE
from sr_runtime.manifest import CheckpointRecord, PipelineInfo
from sr_runtime.sd.prompt_embeds import PROMPT_EMBEDS_NAME
from sr_runtime.version import TOOL_VERSION

from ...cache import DEMO_SEED, cache_root, cached_folder
from ...reporting import Report
from ...sd.models import SD_TURBO
from ..base import BuildPlan, FamilySource
from .checkpoint import FILE_NAME
from .components import S3DiffComponents, load_components
from .de_net import FILE_NAME as DE_NET_FILE
from .graphs import GRAPHS, segment_specs
from .locate import S3DiffPaths, find_checkpoints
from .section import build_section
from .vae_segments import segments_of

FAMILY = "s3diff"
TILE_MULTIPLE = PAD_MULTIPLE // SCALE  # an LR tile whose x4 image needs no padding
SMALLEST = TILE_MULTIPLE  # the smallest image the engine profiles take (LR px)


def check_tile(tile: int) -> None:
    if not is_int(tile, TILE_MULTIPLE) or tile % TILE_MULTIPLE:
        raise SRError(f"tile {tile!r}: S3Diff engines are built for LR images of a multiple of {TILE_MULTIPLE} px "
                      f"(their x{SCALE} size a multiple of {PAD_MULTIPLE}); the default 128 is Table 7's 128 -> 512")


@dataclass
class S3DiffSource(FamilySource):
    components: S3DiffComponents
    demo: bool
    checkpoints: dict[str, CheckpointRecord] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return "s3diff-demo" if self.demo else "s3diff"

    def fingerprint(self) -> str:
        return json.dumps({name: record.sha256 for name, record in self.checkpoints.items()}, sort_keys=True)

    def plan_build(self, tile: int, batch: int, report: Report) -> BuildPlan:
        import torch

        check_tile(tile)
        with torch.inference_mode():
            embeds = self.components.prompt_embeds().float().cpu().numpy()
        section = build_section(self.components, segments_of(self.components, "encoder"),
                                segments_of(self.components, "decoder"), embeds.shape)
        return BuildPlan(
            graphs=(*GRAPHS, *segment_specs(section)),
            dims=lambda n: dims(n, tile, tile, section, embeds.shape),
            pipeline=PipelineInfo(family=FAMILY, scale=SCALE, tile=tile, batch=batch),
            section=section,
            stem=self.name,
            summary=f"LoRA ranks {section.lora_rank_unet}/{section.lora_rank_vae} modulated live by deg_score, "
                    f"{len(section.encoder_segments) + len(section.decoder_segments)} tiled-VAE segments",
            write_files=lambda folder: _save(folder / PROMPT_EMBEDS_NAME, embeds),
            min_dims=dims(1, SMALLEST, SMALLEST, section, embeds.shape),
        )


def _save(path: Path, array: np.ndarray) -> list[Path]:
    np.save(path, array)
    return [path]


def demo_checkpoints() -> S3DiffPaths:
    """The tiny random-weight checkpoints in the official formats, written once into the cache."""
    from .random_checkpoints import SD_TURBO_FOLDER, write_random_s3diff

    folder = cached_folder(cache_root() / "demo-checkpoints" / f"s3diff-seed{DEMO_SEED}-{TOOL_VERSION}",
                           lambda tmp: write_random_s3diff(tmp, seed=DEMO_SEED))
    return S3DiffPaths(folder / SD_TURBO_FOLDER, folder / FILE_NAME, folder / DE_NET_FILE)


def load_source(paths: S3DiffPaths, demo: bool, report: Report) -> S3DiffSource:
    from ...checkpoints import file_record
    from ...sd.loading import folder_record

    report(f"loading SD-Turbo from {paths.sd_turbo}, S3Diff from {paths.checkpoint} and DEResNet from {paths.de_net}")
    components = load_components(paths.sd_turbo, paths.checkpoint, paths.de_net)
    report("hashing checkpoints")
    checkpoints = {"sd_turbo": folder_record(paths.sd_turbo, SD_TURBO), "s3diff": file_record(paths.checkpoint),
                   "de_net": file_record(paths.de_net)}
    return S3DiffSource(components, demo, checkpoints)


def resolve_source(sd_turbo, checkpoint, de_net, allow_demo: bool = True, report: Report = print) -> S3DiffSource:
    """The given checkpoints, else the default places, else (``allow_demo``) the demo model."""
    found = find_checkpoints(sd_turbo, checkpoint, de_net)
    if found is not None:
        return load_source(found, False, report)
    if not allow_demo:
        raise SRError("no S3Diff checkpoints found: pass --sd-turbo DIR, --checkpoint s3diff.pkl and --de-net de_net.pth")
    report("WARNING: no S3Diff checkpoints found (--sd-turbo / --checkpoint / --de-net, $SR_EXPORT_S3DIFF, ./weights); "
           "building the built-in DEMO model with random weights: its outputs are NOT meaningful")
    return load_source(demo_checkpoints(), True, report)
