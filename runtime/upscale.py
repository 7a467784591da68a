"""The image-level loop of InvSR, shared by the PyTorch reference and the engine runtime.

pad -> tiles -> (per batch of tiles: the network chain) -> Gaussian blend -> crop -> colour fix.
Only the network chain differs between the two sides; it is passed in as ``run_tiles``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .color import apply_color_fix
from .errors import SRError
from .noise import PosteriorNoise
from .tiling import TileBlender, crop_output, iter_tile_batches, pad_image, plan_tiles

SCALE = 4
LATENT_CHANNELS = 4
VAE_FACTOR = 8  # image pixels per latent pixel
MAX_TILE = 256  # above this the official sampler switches to a tiled VAE, which we do not reproduce

# (LR tiles (n,3,P,P) float32 in [0,1], predictor noise, VAE noise) -> SR tiles (n,3,4P,4P) in [0,1]
TileRunner = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class UpscaleSettings:
    tile: int = 128
    batch: int = 8
    color_fix: str | None = None
    seed: int | None = None


TILE_MULTIPLE = 16  # LR px: the VAE's 8 px per latent px times the UNet's 3 downsamplings, over the x4


def check_tile(tile: int) -> None:
    if not isinstance(tile, int) or tile < TILE_MULTIPLE or tile % TILE_MULTIPLE:
        raise SRError(f"tile {tile} must be a positive multiple of {TILE_MULTIPLE} (the official size is 128)")
    if tile > MAX_TILE:
        raise SRError(
            f"tile {tile} is above {MAX_TILE}: the official sampler tiles its VAE there, which is not reproduced"
        )


def latent_shape(batch: int, tile: int) -> tuple[int, int, int, int]:
    side = tile * SCALE // VAE_FACTOR
    return (batch, LATENT_CHANNELS, side, side)


def upscale_array(
    image: np.ndarray,
    run_tiles: TileRunner,
    settings: UpscaleSettings,
    steps: int,
    on_tiles_done: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """``image`` (H,W,3) float32 in [0,1] -> (4H,4W,3) float32 in [0,1].

    ``steps`` is the number of Euler steps of ``run_tiles``: the seeded noise stream depends on it.

    ``on_tiles_done(done, total)`` is called after each batch, for progress bars.
    """
    check_tile(settings.tile)
    lr = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
    plan = plan_tiles(lr.shape[1], lr.shape[2], tile=settings.tile, scale=SCALE)
    padded = pad_image(lr, plan)
    blender = TileBlender(plan, channels=3)
    noise = PosteriorNoise(settings.seed, steps)
    done, total = 0, len(plan.starts)
    for tiles, starts in iter_tile_batches(padded, plan, settings.batch):
        predictor_noise, vae_noise = noise.draw(latent_shape(len(tiles), settings.tile))
        blender.add(run_tiles(tiles, predictor_noise, vae_noise), starts)
        done += len(starts)
        if on_tiles_done is not None:
            on_tiles_done(done, total)
    sr = crop_output(blender.result(), plan).astype(np.float32)
    sr = apply_color_fix(sr, padded, settings.color_fix)
    return np.clip(sr, 0.0, 1.0).transpose(1, 2, 0).copy()
