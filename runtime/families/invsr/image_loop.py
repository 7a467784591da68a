"""The image-level loop of InvSR, shared by the PyTorch reference and the engine runtime.

pad -> tiles -> (per batch of tiles: the network chain of a step group) -> Gaussian blend -> crop ->
colour fix. Only the network chain differs between the two sides; it is passed in as ``run_tiles``.
All tiles run one group (uniform, the official sampler), or each its own (``--steps auto``, adaptive.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...checks import check_rgb_image, is_int
from ...color import INVSR_METHODS, apply_color_fix, color_fix_method
from ...errors import SRError
from ...family import TileProgress
from ...images import OutputFile
from ...resources import ImageCost
from ...sd.posterior import check_seed
from .adaptive import plan_groups, run_adaptive, write_steps_map
from .difficulty import check_thresholds, default_thresholds
from .noise import PosteriorNoise
from .section import SCALE, Geometry, check_tile
from .tiling import TileBlender, crop_output, iter_tile_batches, pad_image, plan_tiles

AUTO = "auto"
log = logging.getLogger(__name__)

# (LR tiles (n,3,P,P) float32 in [0,1], predictor noise, VAE noise, step group) -> SR tiles (n,3,4P,4P)
TileRunner = Callable[[np.ndarray, np.ndarray, np.ndarray, int], np.ndarray]


@dataclass(frozen=True)
class InvSROptions:
    """Per-image options of InvSR (``Upscaler.upscale`` keywords)."""

    color_fix: str | None = None  # "wavelet" or "ycbcr", as the official --color_fix
    seed: int | None = None  # sample both posteriors with this seed; None: their means
    # A step group by its step count, "auto" (each tile the group its difficulty asks for), or None: the only
    # group of a one-schedule bundle, auto for one with several.
    steps: int | str | None = None
    adaptive_thresholds: tuple[float, ...] | None = None  # difficulty thresholds between groups (auto)
    steps_map: str | Path | OutputFile | None = None  # a PNG showing each tile's group

    def __post_init__(self):
        color_fix_method(self.color_fix, INVSR_METHODS)
        check_seed(self.seed)
        if self.steps is not None and self.steps != AUTO and not is_int(self.steps, 1):
            raise SRError(f"steps {self.steps!r} must be a positive number of steps or {AUTO!r}")

    def group(self, group_steps: list[int]) -> int | None:
        """The index of the group every tile runs, or None for patch-adaptive sampling."""
        if self.steps == AUTO or (self.steps is None and len(group_steps) > 1):
            check_thresholds(self.thresholds(len(group_steps)), len(group_steps))
            return None
        if self.adaptive_thresholds is not None:
            raise SRError("adaptive thresholds go with --steps auto")
        if self.steps is None:
            return 0
        if self.steps not in group_steps:
            raise SRError(f"steps {self.steps}: this model runs step groups of {', '.join(map(str, group_steps))} steps")
        return group_steps.index(self.steps)

    def thresholds(self, groups: int) -> tuple[float, ...]:
        return tuple(self.adaptive_thresholds) if self.adaptive_thresholds is not None else default_thresholds(groups)


@dataclass(frozen=True)
class UpscaleSettings(InvSROptions):
    tile: int = 128
    batch: int = 8


# Host bytes per SR pixel of the padded image at the loop's peak (tracemalloc): the float32 result and
# its HWC copy, plus the colour fix's intermediates; on top, the blend's float64 band of one tile row
# and its overlap (sums of 3 channels and the weights), and a tile's float64 temporaries.
BYTES_PER_SR_PIXEL = {None: 27, "wavelet": 120, "ycbcr": 96}


def image_cost(height: int, width: int, tile: int, geometry: Geometry, color_fix: str | None) -> ImageCost:
    plan = plan_tiles(height, width, tile=tile, scale=SCALE, multiple=geometry.pad_multiple)
    sr_tile, sr_width = SCALE * tile, SCALE * plan.padded_width
    band = (sr_tile + SCALE * plan.stride) * sr_width * 4 * 8 + 2 * 3 * sr_tile * sr_tile * 8
    sr_pixels = SCALE * plan.padded_height * sr_width
    return ImageCost(BYTES_PER_SR_PIXEL[color_fix_method(color_fix)] * sr_pixels + band, len(plan.starts))


def upscale_array(
    image: np.ndarray,
    run_tiles: TileRunner,
    settings: UpscaleSettings,
    group_steps: list[int],
    geometry: Geometry,
    on_tiles_done: TileProgress | None = None,
) -> np.ndarray:
    """``image`` (H,W,3) float32 in [0,1] -> (4H,4W,3) float32 in [0,1].

    ``group_steps``: the Euler steps of each group ``run_tiles`` can run (the seeded noise stream of a
    uniform run depends on it). ``on_tiles_done(done, total)`` is called after each batch, for progress bars.
    """
    check_tile(settings.tile, geometry)
    check_rgb_image(image)
    group = settings.group(group_steps)
    lr = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
    plan = plan_tiles(lr.shape[1], lr.shape[2], tile=settings.tile, scale=SCALE, multiple=geometry.pad_multiple)
    padded = pad_image(lr, plan)
    blender = TileBlender(plan, channels=3)
    if group is None:
        groups = plan_groups(padded, plan, settings.thresholds(len(group_steps)))
        log.info("adaptive steps, %s", groups.summary(group_steps))
        run_adaptive(padded, plan, groups, run_tiles, settings.batch, geometry, settings.seed, blender, on_tiles_done)
        chosen = groups.groups
    else:
        _run_uniform(padded, plan, run_tiles, settings, group, group_steps[group], geometry, blender, on_tiles_done)
        chosen = np.full(len(plan.starts), group)
    if settings.steps_map is not None:
        write_steps_map(settings.steps_map, lr, plan, chosen)
    sr = apply_color_fix(crop_output(blender.result(), plan), padded, settings.color_fix)
    return np.ascontiguousarray(np.clip(sr, 0.0, 1.0, out=sr).transpose(1, 2, 0))


def _run_uniform(padded, plan, run_tiles: TileRunner, settings: UpscaleSettings, group: int, steps: int,
                 geometry: Geometry, blender: TileBlender, on_tiles_done: TileProgress | None) -> None:
    """The official sampler's loop: batches in row-major order, the noise drawn per batch in its order."""
    noise = PosteriorNoise(settings.seed, steps)
    done, total = 0, len(plan.starts)
    for tiles, starts in iter_tile_batches(padded, plan, settings.batch):
        predictor_noise, vae_noise = noise.draw(geometry.latent_shape(len(tiles), settings.tile))
        blender.add(run_tiles(tiles, predictor_noise, vae_noise, group), starts)
        done += len(starts)
        if on_tiles_done is not None:
            on_tiles_done(done, total)
