"""The RRDBNet family (Real-ESRGAN, BSRGAN) on the runtime side: one engine call per tile batch,
overlap-crop tiling (``sr_runtime.crop_tiling``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...backends.base import LR_FEED, TILES, ChainId, ChainPlan, TileChain
from ...crop_tiling import check_overlap, crop_cost, upscale_tiled
from ...errors import SRError
from ...family import Family, NoOptions, TileProgress
from ...manifest import PipelineInfo
from ...resources import ImageCost
from .graphs import GRAPHS, RRDBNET, SCALE, dims

FEEDS = (LR_FEED,)


@dataclass
class RRDBNetSection:
    overlap: int  # LR px of context kept on each side of a tile's output

    def problem(self, pipeline: PipelineInfo) -> str | None:
        try:
            check_overlap(pipeline.tile, self.overlap)
        except SRError as err:
            return str(err)
        return None


class RRDBNetFamily(Family):
    name = "rrdbnet"
    title = "RRDBNet"
    scale = SCALE
    section_type = RRDBNetSection
    graphs = GRAPHS
    feeds = FEEDS

    def plan(self, chain: ChainId, batch: int, height: int, width: int) -> ChainPlan:
        """RRDBNet has one chain, ``TILES``."""
        self.check_single_chain(chain)
        return ChainPlan(batch, (RRDBNET.call(),), {}, FEEDS, "image", dims(batch, height, width))

    def upscale(self, image: np.ndarray, chain: TileChain, options: NoOptions,
                on_tiles_done: TileProgress | None) -> np.ndarray:
        p = self.manifest.pipeline
        return upscale_tiled(image, lambda tiles: chain({LR_FEED: tiles}, TILES), p.tile, self.section.overlap,
                             p.batch, SCALE, on_tiles_done)

    def cost(self, height: int, width: int, options: NoOptions) -> ImageCost:
        return crop_cost(height, width, self.manifest.pipeline.tile, self.section.overlap, SCALE)

    def describe(self) -> list[str]:
        return [f"tiling      up to {self.manifest.pipeline.tile} px, overlap {self.section.overlap} px (crop, no blend)"]
