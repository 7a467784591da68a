"""What an OSEDiff build is made from (the user's checkpoints or the built-in demo model), and its plan: the graphs
(the five stages and the tiled VAE's segments), the manifest section and the tokenizer files."""

from __future__ import annotations

import json
import shutil
from dataclasses import astuple, dataclass, field
from pathlib import Path

from sr_runtime.checks import is_int
from sr_runtime.errors import SRError
from sr_runtime.families.osediff.family import TOKENIZER_FILES
from sr_runtime.families.osediff.graphs import dims
from sr_runtime.families.osediff.preprocess import upscaled_size
from sr_runtime.families.osediff.section import MIN_LR_SIDE, SCALE, SIZE_MULTIPLE
from sr_runtime.manifest import CheckpointRecord, PipelineInfo
from sr_runtime.version import TOOL_VERSION

from ...cache import DEMO_SEED, cache_root, cached_folder
from ...reporting import Report
from ..base import BuildPlan, FamilySource
from .checkpoint import FILE_NAME
from .components import OSEDiffComponents, load_components
from .graphs import GRAPHS, segment_specs
from .locate import OSEDiffPaths, find_checkpoints
from .ram_checkpoint import DAPE_FILE, RAM_FILE, TAG_LIST_FILE, THRESHOLD_FILE
from .section import build_section

FAMILY = "osediff"
# The manifest's checkpoint records, in OSEDiffPaths' order.
RECORDS = ("sd21", "osediff", "ram", "dape", "ram_tag_list", "ram_thresholds")


def check_tile(tile: int) -> None:
    """The tile is the LR size the engines are built for (Table 7's 128 -> 512: one image, no tiling)."""
    if not is_int(tile, MIN_LR_SIDE):
        raise SRError(f"tile {tile!r}: OSEDiff engines are built for LR images of at least {MIN_LR_SIDE} px (the "
                      f"official enlarges smaller ones to that); the default 128 is Table 7's 128 -> 512")


@dataclass
class OSEDiffSource(FamilySource):
    components: OSEDiffComponents
    demo: bool
    checkpoints: dict[str, CheckpointRecord] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return "osediff-demo" if self.demo else "osediff"

    def fingerprint(self) -> str:
        return json.dumps({name: record.sha256 for name, record in self.checkpoints.items()}, sort_keys=True)

    def plan_build(self, tile: int, batch: int, report: Report) -> BuildPlan:
        check_tile(tile)
        section = build_section(self.components)
        height, width = upscaled_size(tile, tile)
        smallest = MIN_LR_SIDE * SCALE - MIN_LR_SIDE * SCALE % SIZE_MULTIPLE
        tokenizer = self.components.sd.folder / "tokenizer"
        return BuildPlan(
            graphs=(*GRAPHS, *segment_specs(section)),
            dims=lambda n: dims(n, height, width, section),
            pipeline=PipelineInfo(family=FAMILY, scale=SCALE, tile=tile, batch=batch),
            section=section,
            stem=self.name,
            summary=f"LoRA ranks {section.lora_rank_unet}/{section.lora_rank_vae} merged, {len(section.tags)} RAM tags, "
                    f"{len(section.encoder_segments) + len(section.decoder_segments)} tiled-VAE segments",
            write_files=lambda folder: [Path(shutil.copyfile(tokenizer / name, folder / name)) for name in TOKENIZER_FILES],
            min_dims=dims(1, smallest, smallest, section),
        )


def demo_checkpoints() -> OSEDiffPaths:
    """The tiny random-weight checkpoints in the official formats, written once into the cache."""
    from .random_checkpoints import write_random_osediff

    return demo_paths(cached_folder(cache_root() / "demo-checkpoints" / f"osediff-seed{DEMO_SEED}-{TOOL_VERSION}",
                                    lambda tmp: write_random_osediff(tmp, seed=DEMO_SEED)))


def demo_paths(folder: Path) -> OSEDiffPaths:
    """The paths of random checkpoints ``write_random_osediff`` wrote into ``folder``."""
    from .random_checkpoints import RAM_FOLDER, SD21_FOLDER

    ram = folder / RAM_FOLDER
    return OSEDiffPaths(folder / SD21_FOLDER, folder / FILE_NAME, ram / RAM_FILE, ram / DAPE_FILE, ram / TAG_LIST_FILE,
                        ram / THRESHOLD_FILE)


def load_source(paths: OSEDiffPaths, demo: bool, report: Report) -> OSEDiffSource:
    from ...checkpoints import file_record
    from ...sd.loading import folder_record
    from ...sd.models import SD21_BASE

    report(f"loading SD-2.1-base from {paths.sd21}, OSEDiff from {paths.checkpoint} and RAM from {paths.ram} + "
           f"{paths.dape}")
    components = load_components(paths)
    report("hashing checkpoints")
    records = (folder_record(paths.sd21, SD21_BASE), *(file_record(path) for path in astuple(paths)[1:]))
    checkpoints = dict(zip(RECORDS, records, strict=True))
    return OSEDiffSource(components, demo, checkpoints)


def resolve_source(sd21, checkpoint, ram, dape, ram_data, allow_demo: bool = True, report: Report = print
                   ) -> OSEDiffSource:
    """The given checkpoints, else the default places, else (``allow_demo``) the demo model."""
    found = find_checkpoints(sd21, checkpoint, ram, dape, ram_data)
    if found is not None:
        return load_source(found, False, report)
    if not allow_demo:
        raise SRError("no OSEDiff checkpoints found: pass --sd21 DIR, --checkpoint osediff.pkl, --ram "
                      "ram_swin_large_14m.pth and --dape DAPE.pth")
    report("WARNING: no OSEDiff checkpoints found (--sd21 / --checkpoint / --ram / --dape, $SR_EXPORT_OSEDIFF, "
           "./preset/models, ./weights); building the built-in DEMO model with random weights: its outputs are NOT "
           "meaningful")
    return load_source(demo_checkpoints(), True, report)
