"""The official latent tiling of the UNet (``S3Diff.forward`` in ``src/s3diff_tile.py``): square tiles of
``min(tile, h, w)`` latent px on the official grid, each guided noise prediction weighted by the
official Gaussian, summed and divided by the summed weights."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import SRError

# The official _gaussian_weights: variance 0.01 of the tile-normalised offset.
VARIANCE = 0.01


def gaussian_weights(size: int) -> np.ndarray:
    """(size, size) float64 as the official computes it; note its centres: (size - 1) / 2 across, size / 2 down."""
    offsets = np.arange(size, dtype=np.float64)

    def probs(midpoint: float) -> np.ndarray:
        return np.exp(-(offsets - midpoint) * (offsets - midpoint) / (size * size) / (2 * VARIANCE)) / np.sqrt(
            2 * np.pi * VARIANCE)

    return np.outer(probs(size / 2), probs((size - 1) / 2))


def tiled(height: int, width: int, tile: int) -> bool:
    """The official switch: one UNet call when the latent has at most tile x tile pixels."""
    return height * width > tile * tile


def _count(length: int, tile: int, overlap: int) -> int:
    count, end = 0, 0
    while end < length:
        end = max(count * tile - overlap * count, 0) + tile
        count += 1
    return count


def tile_origins(height: int, width: int, tile: int, overlap: int) -> tuple[int, list[tuple[int, int]]]:
    """(the tile side, the (y, x) origins in the official order: columns of x outer, y inner)."""
    side = min(tile, height, width)
    if side <= overlap:
        raise SRError(f"a {width}x{height} latent is cut into {side} px tiles, which the latent overlap {overlap} "
                      "does not fit (the official grid would never end); pass a smaller --latent-overlap")
    across, down = _count(width, side, overlap), _count(height, side, overlap)
    origins = []
    for column in range(across):
        x = width - side if column == across - 1 else column * (side - overlap)
        for row in range(down):
            origins.append((height - side if row == down - 1 else row * (side - overlap), x))
    return side, origins


# (latent tiles (n, C, s, s) float32) -> guided noise predictions of the same shape
TileDenoiser = Callable[[np.ndarray], np.ndarray]


def denoise_tiled(latent: np.ndarray, denoise: TileDenoiser, tile: int, overlap: int, batch: int) -> np.ndarray:
    """The official tiled noise prediction of ``latent`` (1, C, h, w), ``batch`` tiles per call."""
    _, channels, height, width = latent.shape
    side, origins = tile_origins(height, width, tile, overlap)
    weights = gaussian_weights(side)
    total = np.zeros((channels, height, width))
    summed = np.zeros((height, width))
    for first in range(0, len(origins), batch):
        chunk = origins[first:first + batch]
        tiles = np.concatenate([latent[:, :, y:y + side, x:x + side] for y, x in chunk])
        for prediction, (y, x) in zip(denoise(tiles), chunk, strict=True):
            total[:, y:y + side, x:x + side] += prediction * weights
            summed[y:y + side, x:x + side] += weights
    return (total / summed)[None].astype(np.float32)
