"""Overlap-and-crop tiling for feed-forward networks (RRDBNet).

Tiles are at most T x T LR px (the bundle's tile size); a side shorter than T is run at its own
length, so an image smaller than a tile is one call on the image itself, as the whole-image run of
the official code does. Along a longer side tiles advance by T - 2*overlap, the last one moved back
to end on the border (``axis_starts``, which InvSR's tiles and ResShift's chopping share). Where two tiles overlap, the seam is cut in the middle
of the overlap: each side keeps only output pixels that saw at least ``overlap`` LR px of real image
around them (or the image border, where a whole-image run sees the same zero padding). A pixel whose
receptive field fits inside that context is computed exactly as in a run on the whole image, so
there is nothing to blend: a hard cut hides the seam, and a Gaussian blend (InvSR's) would only mix
two equal values. Nothing is ever padded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from .checks import check_rgb_image, require_non_negative_int, require_positive_int
from .errors import SRError
from .resources import ImageCost

# (n, 3, h, w) float32 LR tiles -> (n, 3, scale*h, scale*w) SR tiles, any float dtype.
TileRunner = Callable[[np.ndarray], np.ndarray]


def axis_starts(length: int, tile: int, stride: int) -> list[int]:
    if length <= tile:
        return [0]
    clamped = [min(start, length - tile) for start in range(0, length, stride)]
    return list(dict.fromkeys(clamped))  # de-duplicate, keeping the first occurrence's order


def check_overlap(tile: int, overlap: int) -> None:
    require_positive_int("tile", tile)
    require_non_negative_int("overlap", overlap)
    if 2 * overlap >= tile:
        raise SRError(f"tile {tile} must be larger than twice the overlap {overlap} (each tile keeps its middle)")


@dataclass(frozen=True)
class CropPlan:
    height: int  # LR image size
    width: int
    tile_height: int  # min(height, tile): every tile of the image has this shape
    tile_width: int
    scale: int
    starts: tuple[tuple[int, int], ...]  # (y, x) LR tile origins, row-major


def plan_crop_tiles(height: int, width: int, tile: int, overlap: int, scale: int = 4) -> CropPlan:
    """The layout for an LR image of ``height`` x ``width``: tiles of at most ``tile`` px per side,
    row-major, stride ``tile - 2*overlap``."""
    for name, value in (("height", height), ("width", width), ("scale", scale)):
        require_positive_int(name, value)
    check_overlap(tile, overlap)
    tile_height, tile_width = min(height, tile), min(width, tile)
    stride = tile - 2 * overlap
    starts = tuple(
        (y, x) for y in axis_starts(height, tile_height, stride) for x in axis_starts(width, tile_width, stride)
    )
    return CropPlan(height, width, tile_height, tile_width, scale, starts)


def iter_crop_batches(lr: np.ndarray, plan: CropPlan, batch: int) -> Iterator[tuple[np.ndarray, list[tuple[int, int]]]]:
    """Yields ((n, C, tile_height, tile_width) float32, their (y, x) starts) with n <= batch."""
    require_positive_int("batch", batch)
    th, tw = plan.tile_height, plan.tile_width
    for first in range(0, len(plan.starts), batch):
        starts = list(plan.starts[first:first + batch])
        yield np.stack([lr[:, y:y + th, x:x + tw] for y, x in starts]).astype(np.float32, copy=False), starts


def keep_ranges(starts: list[int], tile: int, length: int) -> dict[int, tuple[int, int]]:
    """LR start of each tile on one axis -> the [begin, end) LR range it contributes, cut in the
    middle of each overlap so both neighbours keep as much context as the layout allows."""
    ordered = sorted(set(starts))
    cuts = [0] + [(a + tile + b) // 2 for a, b in zip(ordered[:-1], ordered[1:], strict=True)] + [length]
    return {s: (cuts[i], cuts[i + 1]) for i, s in enumerate(ordered)}


class TileStitcher:
    """Places each SR tile's kept part into the SR image; every pixel is written exactly once."""

    def __init__(self, plan: CropPlan, channels: int = 3):
        self.plan = plan
        self.channels = channels
        self._rows = keep_ranges([y for y, _ in plan.starts], plan.tile_height, plan.height)
        self._cols = keep_ranges([x for _, x in plan.starts], plan.tile_width, plan.width)
        shape = (plan.scale * plan.height, plan.scale * plan.width)
        self._image = np.zeros((channels, *shape), dtype=np.float32)
        self._written = np.zeros(shape, dtype=np.uint8)

    def add(self, sr_tiles: np.ndarray, starts: list[tuple[int, int]]) -> None:
        s = self.plan.scale
        expected = (len(starts), self.channels, s * self.plan.tile_height, s * self.plan.tile_width)
        if sr_tiles.shape != expected:
            raise SRError(f"SR tiles must have shape {expected}, got {sr_tiles.shape}")
        for tile, (y, x) in zip(sr_tiles, starts, strict=True):
            if y not in self._rows or x not in self._cols:
                raise SRError(f"tile start {(y, x)} is not in the tile plan")
            (y0, y1), (x0, x1) = self._rows[y], self._cols[x]
            out = (slice(s * y0, s * y1), slice(s * x0, s * x1))
            self._image[:, out[0], out[1]] = tile[:, s * (y0 - y):s * (y1 - y), s * (x0 - x):s * (x1 - x)]
            self._written[out] += 1

    def result(self) -> np.ndarray:
        """(C, scale*height, scale*width) float32."""
        if not np.all(self._written == 1):
            raise SRError(f"{int(np.count_nonzero(self._written != 1))} output pixels were not written exactly once "
                          "(were all tiles added?)")
        return self._image


# Host bytes per SR pixel at the loop's peak (tracemalloc): the float32 result, its HWC copy, the write mask.
BYTES_PER_SR_PIXEL = 28


def crop_cost(height: int, width: int, tile: int, overlap: int, scale: int = 4) -> ImageCost:
    plan = plan_crop_tiles(height, width, tile, overlap, scale)
    return ImageCost(BYTES_PER_SR_PIXEL * scale * height * scale * width, len(plan.starts))


def upscale_tiled(
    image: np.ndarray,
    run_tiles: TileRunner,
    tile: int,
    overlap: int,
    batch: int,
    scale: int = 4,
    on_tiles_done: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """``image`` (H,W,3) float32 in [0,1] -> (scale*H, scale*W, 3) float32 clamped to [0,1]."""
    check_rgb_image(image)
    lr = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
    plan = plan_crop_tiles(lr.shape[1], lr.shape[2], tile, overlap, scale)
    stitcher = TileStitcher(plan)
    done, total = 0, len(plan.starts)
    for tiles, starts in iter_crop_batches(lr, plan, batch):
        stitcher.add(np.asarray(run_tiles(tiles), dtype=np.float32), starts)
        done += len(starts)
        if on_tiles_done is not None:
            on_tiles_done(done, total)
    sr = stitcher.result()
    return np.ascontiguousarray(np.clip(sr, 0.0, 1.0, out=sr).transpose(1, 2, 0))
