"""The RRDBNet family (Real-ESRGAN, BSRGAN): one engine call per tile batch, overlap-crop tiling.

The bundle's single graph ``rrdbnet`` maps (n,3,T,T) LR tiles to (n,3,4T,4T); the manifest gives
T (``tile``), the context kept around each tile (``overlap``) and the batch size.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .backends.base import Call, ChainPlan, TileChain
from .crop_tiling import check_overlap, upscale_tiled
from .errors import SRError
from .family import Family, check_graph_io
from .manifest import Manifest

FAMILY = "rrdbnet"
GRAPH = "rrdbnet"
SCALE = 4  # x2 / x1 RRDBNets (pixel-unshuffle first) are not exported
FEEDS = ("lr",)


def rrdbnet_calls() -> tuple[Call, ...]:
    return (Call(GRAPH, {"lr": "lr"}, {"image": "image"}),)


def rrdbnet_plan(manifest: Manifest, batch: int) -> ChainPlan:
    tile = manifest.pipeline.tile
    sizes = {"batch": batch, "height": tile, "width": tile, "out_height": SCALE * tile, "out_width": SCALE * tile}
    return ChainPlan(batch, rrdbnet_calls(), {}, FEEDS, "image", sizes)


def check_rrdbnet_bundle(manifest: Manifest) -> None:
    p = manifest.pipeline
    if p.family != FAMILY or p.scale != SCALE:
        raise SRError(f"the bundle is a {p.family} x{p.scale} model; this chain runs {FAMILY} x{SCALE}")
    check_overlap(p.tile, p.overlap)
    check_graph_io(manifest, rrdbnet_calls())


class RRDBNetFamily(Family):
    name = FAMILY
    feeds = FEEDS

    def __init__(self, bundle: Path, manifest: Manifest):
        super().__init__(bundle, manifest)
        check_rrdbnet_bundle(manifest)

    def plan(self, batch: int) -> ChainPlan:
        return rrdbnet_plan(self.manifest, batch)

    def upscale(
        self,
        image: np.ndarray,
        chain: TileChain,
        color_fix: str | None = None,
        seed: int | None = None,
        on_tiles_done: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        # Both belong to InvSR's sampler; silently ignoring them would hide a mistaken command line.
        if color_fix is not None or seed is not None:
            raise SRError("--color-fix and --seed are InvSR options; an RRDBNet bundle takes neither")
        p = self.manifest.pipeline
        return upscale_tiled(image, lambda tiles: chain({"lr": tiles}), p.tile, p.overlap, p.batch, SCALE,
                             on_tiles_done)
