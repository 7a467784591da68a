"""ResShift and SinSR on the runtime side: the chain of three engines and the official patch loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...backends.base import TILES, ChainId, ChainPlan, TileChain
from ...checks import check_rgb_image
from ...errors import SRError
from ...family import Family, TileProgress
from ...manifest import Manifest
from ...resources import ImageCost
from .chain import feed_names, resshift_plan
from .graphs import GRAPHS, SCALE
from .image_loop import image_cost, plan_patches, upscale_image
from .noise import DEFAULT_SEED
from .options import Chopping, ResShiftOptions, default_stride
from .section import ResShiftSection


class ResShiftFamily(Family):
    name = "resshift"
    title = "ResShift"
    scale = SCALE
    section_type = ResShiftSection
    options_type = ResShiftOptions
    graphs = GRAPHS
    feeds = feed_names(1)  # the bundle's step count decides: see __init__

    def __init__(self, bundle: Path, manifest: Manifest):
        super().__init__(bundle, manifest)
        self.feeds = feed_names(len(self.section.steps))
        self.max_patch = self.section.max_patch(manifest.pipeline)

    @property
    def tile_shape(self) -> tuple[int, int]:
        """A full padded patch: the engines' largest input."""
        return self.max_patch, self.max_patch

    def plan(self, chain: ChainId, batch: int, height: int, width: int) -> ChainPlan:
        """ResShift has one chain, ``TILES``."""
        m = self.section.pad_multiple
        self.check_single_chain(chain)
        if height % m or width % m or not (1 <= height <= self.max_patch and 1 <= width <= self.max_patch):
            raise SRError(f"the engines take padded patches of {m} to {self.max_patch} px in multiples of {m}, "
                          f"got {height}x{width}")
        return resshift_plan(self.section, batch, height, width)

    def upscale(self, image: np.ndarray, chain: TileChain, options: ResShiftOptions,
                on_tiles_done: TileProgress | None) -> np.ndarray:
        check_rgb_image(image)
        chopping = self._chopping(image.shape[0], image.shape[1], options)
        return upscale_image(image, lambda feeds: chain(feeds, TILES), self.section, options, chopping,
                             self.manifest.pipeline.batch, on_tiles_done)

    def cost(self, height: int, width: int, options: ResShiftOptions) -> ImageCost:
        chopping = self._chopping(height, width, options)
        return image_cost(height, width, chopping, self.section, self.manifest.pipeline.batch)

    def _chopping(self, height: int, width: int, options: ResShiftOptions) -> Chopping:
        """The options' chopping (default: the bundle's tile), if this image's padded patches fit the engines."""
        chopping = options.chopping(self.manifest.pipeline.tile)
        layout = plan_patches(height, width, chopping, self.section.pad_multiple)
        if max(layout.padded_height, layout.padded_width) > self.max_patch:
            raise SRError(
                f"{width}x{height} is cut into {layout.patch_width}x{layout.patch_height} patches padded to "
                f"{layout.padded_width}x{layout.padded_height}, above the {self.max_patch} px this bundle's engines "
                f"take (built with --tile {self.manifest.pipeline.tile}); pass --chop-size {self.max_patch} or less, "
                "or rebuild with a larger --tile")
        return chopping

    def describe(self) -> list[str]:
        s, tile = self.section, self.manifest.pipeline.tile
        return [
            f"sampler     {s.model}: {len(s.steps)} UNet call(s) at t = {[int(step.timestep) for step in s.steps]}",
            f"chopping    default {tile} px at stride {default_stride(tile)}; patches padded to multiples of "
            f"{s.pad_multiple}, up to {self.max_patch} px",
            f"noise       seed {DEFAULT_SEED} unless --seed / --zero-noise; prior scale {s.prior_scale:.6g}",
        ]
