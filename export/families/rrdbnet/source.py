"""Real-ESRGAN and BSRGAN builds: an RRDBNet checkpoint (or the seeded demo model) and its build plan."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sr_runtime.crop_tiling import check_overlap
from sr_runtime.errors import SRError
from sr_runtime.families.rrdbnet import RRDBNetFamily, RRDBNetSection
from sr_runtime.families.rrdbnet.graphs import MIN_SIDE, SCALE, dims
from sr_runtime.manifest import CheckpointRecord, PipelineInfo
from sr_runtime.version import TOOL_VERSION

from ...cache import DEMO_SEED, cache_root, cached_folder
from ...checkpoints import file_record
from ...reporting import Report
from ..base import BuildPlan, FamilySource
from .graphs import GRAPHS
from .layouts import BSRGAN, CHECKPOINT_FILES, LAYOUTS, REALESRGAN
from .model import RRDBNet, load_rrdbnet, write_random_rrdbnet

# LR px of real context kept on each side of a tile's output: seams vanish once it covers the receptive
# field that matters; 16 is what Real-ESRGAN users settle on (its --tile_pad is 10).
DEFAULT_OVERLAP = 16
# Where the official download scripts put the weights (Real-ESRGAN: weights/), searched when no path is given.
WEIGHTS_FOLDER = Path("weights")
# Release files as a BasicSR-style {'params_ema': ...} or a bare dict (BSRGAN).
WRAPPERS = {REALESRGAN: "params_ema", BSRGAN: None}


@dataclass
class RRDBNetSource(FamilySource):
    model: str  # "realesrgan" or "bsrgan": the checkpoint layout, and the bundle's name
    components: RRDBNet  # what the graph spec's make_module takes
    demo: bool
    checkpoints: dict[str, CheckpointRecord] = field(default_factory=dict)
    # A tiling choice recorded in the manifest, not part of the weights (so not in the fingerprint).
    overlap: int = DEFAULT_OVERLAP

    @property
    def name(self) -> str:
        return f"{self.model}-demo" if self.demo else self.model

    def fingerprint(self) -> str:
        checkpoints = {name: record.sha256 for name, record in self.checkpoints.items()}
        return json.dumps({"family": RRDBNetFamily.name, "model": self.model, "checkpoints": checkpoints,
                           "config": asdict(self.components.config)}, sort_keys=True)

    def plan_build(self, tile: int, batch: int, report: Report) -> BuildPlan:
        check_overlap(tile, self.overlap)
        return BuildPlan(
            graphs=GRAPHS,
            dims=lambda n: dims(n, tile, tile),
            pipeline=PipelineInfo(family=RRDBNetFamily.name, scale=SCALE, tile=tile, batch=batch),
            section=RRDBNetSection(overlap=self.overlap),
            stem=self.name,
            summary=f"{self.model} {self.components.config}, overlap {self.overlap}",
            fp16_fallback=True,
            min_dims=dims(1, MIN_SIDE, MIN_SIDE),
        )


def demo_checkpoint(model: str) -> Path:
    """A tiny seeded random model in ``model``'s release format, written once into the cache and then
    read by the real loader, so the demo takes the same path as a real checkpoint."""
    folder = cached_folder(
        cache_root() / "demo-checkpoints" / f"{model}-seed{DEMO_SEED}-{TOOL_VERSION}",
        lambda tmp: write_random_rrdbnet(tmp / CHECKPOINT_FILES[model], model, seed=DEMO_SEED, wrapper=WRAPPERS[model]),
    )
    return folder / CHECKPOINT_FILES[model]


def load_source(model: str, path: Path, demo: bool, overlap: int, report: Report) -> RRDBNetSource:
    report(f"loading {model} from {path}")
    checkpoints = {model: file_record(path)}
    return RRDBNetSource(model, load_rrdbnet(path, model), demo, checkpoints, overlap)


def resolve_rrdbnet_source(model: str, checkpoint: str | Path | None, overlap: int = DEFAULT_OVERLAP,
                           allow_demo: bool = True, report: Report = print) -> RRDBNetSource:
    """``checkpoint``, else ./weights/<release file name>, else (``allow_demo``) the demo model."""
    if model not in LAYOUTS:
        raise SRError(f"unknown RRDBNet model {model!r}; choose one of {', '.join(LAYOUTS)}")
    path = Path(checkpoint) if checkpoint else None
    if path is None and (WEIGHTS_FOLDER / CHECKPOINT_FILES[model]).is_file():
        path = WEIGHTS_FOLDER / CHECKPOINT_FILES[model]
    if path is not None:
        return load_source(model, path, False, overlap, report)
    if not allow_demo:
        raise SRError(f"no {model} checkpoint found: pass --checkpoint PTH")
    report(
        f"WARNING: no {model} checkpoint found (--checkpoint, ./weights/{CHECKPOINT_FILES[model]}); building the "
        "built-in DEMO model with random weights: its outputs are NOT meaningful"
    )
    return load_source(model, demo_checkpoint(model), True, overlap, report)
