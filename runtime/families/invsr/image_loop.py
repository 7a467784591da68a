"""The image-level loop of InvSR, shared by the PyTorch reference and the engine runtime.

pad -> tiles -> (per batch of tiles: the network chain) -> Gaussian blend -> crop -> colour fix.
Only the network chain differs between the two sides; it is passed in as ``run_tiles``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ...color import apply_color_fix, check_color_fix
from ...errors import SRError
from ...family import TileProgress
from ...resources import ImageCost
from ...tiling import TileBlender, check_rgb_image, crop_output, iter_tile_batches, pad_image, plan_tiles
from .noise import PosteriorNoise
from .section import SCALE, Geometry, check_tile

MAX_SEED = 2**63 - 1

# (LR tiles (n,3,P,P) float32 in [0,1], predictor noise, VAE noise) -> SR tiles (n,3,4P,4P) in [0,1]
TileRunner = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class InvSROptions:
    """Per-image options of InvSR (``Upscaler.upscale`` keywords)."""

    color_fix: str | None = None  # "wavelet" or "ycbcr", as the official --color_fix
    seed: int | None = None  # sample both posteriors with this seed; None: their means

    def __post_init__(self):
        check_color_fix(self.color_fix)
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)
                                      or not 0 <= self.seed <= MAX_SEED):
            raise SRError(f"seed {self.seed!r} must be an integer from 0 to {MAX_SEED}")


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
    return ImageCost(BYTES_PER_SR_PIXEL[color_fix] * sr_pixels + band, len(plan.starts))


def upscale_array(
    image: np.ndarray,
    run_tiles: TileRunner,
    settings: UpscaleSettings,
    steps: int,
    geometry: Geometry,
    on_tiles_done: TileProgress | None = None,
) -> np.ndarray:
    """``image`` (H,W,3) float32 in [0,1] -> (4H,4W,3) float32 in [0,1].

    ``steps`` is the number of Euler steps of ``run_tiles``: the seeded noise stream depends on it.
    ``on_tiles_done(done, total)`` is called after each batch, for progress bars.
    """
    check_tile(settings.tile, geometry)
    check_rgb_image(image)
    lr = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
    plan = plan_tiles(lr.shape[1], lr.shape[2], tile=settings.tile, scale=SCALE, multiple=geometry.pad_multiple)
    padded = pad_image(lr, plan)
    blender = TileBlender(plan, channels=3)
    noise = PosteriorNoise(settings.seed, steps)
    done, total = 0, len(plan.starts)
    for tiles, starts in iter_tile_batches(padded, plan, settings.batch):
        predictor_noise, vae_noise = noise.draw(geometry.latent_shape(len(tiles), settings.tile))
        blender.add(run_tiles(tiles, predictor_noise, vae_noise), starts)
        done += len(starts)
        if on_tiles_done is not None:
            on_tiles_done(done, total)
    sr = apply_color_fix(crop_output(blender.result(), plan), padded, settings.color_fix)
    return np.ascontiguousarray(np.clip(sr, 0.0, 1.0, out=sr).transpose(1, 2, 0))
