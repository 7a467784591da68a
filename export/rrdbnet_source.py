"""Real-ESRGAN and BSRGAN builds: an RRDBNet checkpoint (or the seeded demo model) and its build plan."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from sr_runtime.bundle_check import sha256_file
from sr_runtime.crop_tiling import check_overlap
from sr_runtime.errors import SRError
from sr_runtime.manifest import PipelineInfo
from sr_runtime.rrdbnet import FAMILY, SCALE
from sr_runtime.version import TOOL_VERSION

from .bundle import atomic_folder
from .families import FamilyBuild, Report
from .graphs import RRDBNET_GRAPHS, rrdbnet_sizes
from .models.rrdbnet import BSRGAN, CHECKPOINT_FILES, LAYOUTS, REALESRGAN, RRDBNet, load_rrdbnet
from .sources import cache_root

MODELS = LAYOUTS  # --model values of this family: realesrgan, bsrgan (each its own checkpoint layout)
# LR px of real context kept on each side of a tile's output: seams vanish once it covers the receptive
# field that matters; 16 is what Real-ESRGAN users settle on (its --tile_pad is 10).
DEFAULT_OVERLAP = 16
DEMO_SEED = 0
# Where the official download scripts put the weights (Real-ESRGAN: weights/), searched when no path is given.
WEIGHTS_FOLDER = Path("weights")
# Release files as a BasicSR-style {'params_ema': ...} or a bare dict (BSRGAN).
WRAPPERS = {REALESRGAN: "params_ema", BSRGAN: None}


@dataclass
class RRDBNetSource:
    model: str  # "realesrgan" or "bsrgan": the checkpoint layout, and the bundle's name
    components: RRDBNet  # what graphs.RRDBNET's make_module takes
    demo: bool
    checkpoints: dict = field(default_factory=dict)  # name -> {"path": str, "sha256": {file: sha256}}
    # A tiling choice recorded in the manifest, not part of the weights (so not in the fingerprint).
    overlap: int = DEFAULT_OVERLAP

    @property
    def name(self) -> str:
        return f"{self.model}-demo" if self.demo else self.model

    def fingerprint(self) -> str:
        return json.dumps({"family": FAMILY, "model": self.model, "checkpoints": self.checkpoints,
                           "config": vars(self.components.config)}, sort_keys=True)

    def plan_build(self, opts, report: Report) -> FamilyBuild:
        check_overlap(opts.tile, self.overlap)
        pipeline = PipelineInfo(family=FAMILY, scale=SCALE, tile=opts.tile, batch=opts.batch, overlap=self.overlap)
        return FamilyBuild(
            graphs=RRDBNET_GRAPHS,
            sizes=lambda batch: rrdbnet_sizes(batch, opts.tile),
            pipeline=pipeline,
            stem=self.name,
            summary=f"{self.model} {self.components.config}, overlap {self.overlap}",
            fp16_fallback=True,
        )


def demo_checkpoint(model: str) -> Path:
    """A tiny seeded random model in ``model``'s release format, written once into the cache and then
    read by the real loader, so the demo takes the same path as a real checkpoint."""
    from .tiny_checkpoints import write_tiny_rrdbnet

    folder = cache_root() / "demo-checkpoints" / f"{model}-seed{DEMO_SEED}-{TOOL_VERSION}"
    if not (folder / "complete").is_file():
        with atomic_folder(folder) as tmp:
            write_tiny_rrdbnet(tmp / CHECKPOINT_FILES[model], model, seed=DEMO_SEED, wrapper=WRAPPERS[model])
            (tmp / "complete").write_text("ok\n")
    return folder / CHECKPOINT_FILES[model]


def resolve_rrdbnet_source(
    model: str, checkpoint: str | Path | None, overlap: int = DEFAULT_OVERLAP, report: Report = print
) -> RRDBNetSource:
    """``checkpoint``, else ./weights/<release file name>, else the demo model (with a loud warning)."""
    if model not in MODELS:
        raise SRError(f"unknown RRDBNet model {model!r}; choose one of {', '.join(MODELS)}")
    path = Path(checkpoint) if checkpoint else None
    if path is None and (WEIGHTS_FOLDER / CHECKPOINT_FILES[model]).is_file():
        path = WEIGHTS_FOLDER / CHECKPOINT_FILES[model]
    demo = path is None
    if demo:
        report(
            f"WARNING: no {model} checkpoint found (--checkpoint, ./weights/{CHECKPOINT_FILES[model]}); building the "
            "built-in DEMO model with random weights: its outputs are NOT meaningful"
        )
        path = demo_checkpoint(model)
    report(f"loading {model} from {path}")
    module = load_rrdbnet(path, model)
    checkpoints = {model: {"path": str(path), "sha256": {path.name: sha256_file(path)}}}
    return RRDBNetSource(model, module, demo, checkpoints, overlap)
