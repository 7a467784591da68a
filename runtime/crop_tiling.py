"""Overlap-and-crop tiling for feed-forward networks (RRDBNet), built on tiling.py's pieces.

Tiles have the bundle's tile size T (static engine shapes) and advance by T - 2*overlap, the last
one moved back to end on the border (``tiling.axis_starts``). Where two tiles overlap, the seam is
cut in the middle of the overlap: each side keeps only output pixels that saw at least ``overlap``
LR px of real image around them (or the image border, where an untiled run sees the same zero
padding). A pixel whose receptive field fits inside that context is computed exactly as in a run
on the whole image, so there is nothing to blend: a hard cut hides the seam, and a Gaussian blend
(InvSR's) would only mix two equal values.

What differs from InvSR's chopping (tiling.py) is the stride, the hard seam and the padding: only an
image smaller than a tile is padded (reflect, bottom/right, up to T), since the engines take T x T.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .errors import SRError
from .tiling import TilePlan, axis_starts, check_chw, crop_output, iter_tile_batches, require_positive_int

# (n, 3, T, T) float32 LR tiles -> (n, 3, scale*T, scale*T) SR tiles, any float dtype.
TileRunner = Callable[[np.ndarray], np.ndarray]


def check_overlap(tile: int, overlap: int) -> None:
    require_positive_int("tile", tile)
    if isinstance(overlap, bool) or not isinstance(overlap, (int, np.integer)) or overlap < 0:
        raise SRError(f"overlap must be a non-negative integer, got {overlap!r}")
    if 2 * overlap >= tile:
        raise SRError(f"tile {tile} must be larger than twice the overlap {overlap} (each tile keeps its middle)")


def plan_crop_tiles(height: int, width: int, tile: int, overlap: int, scale: int = 4) -> TilePlan:
    """The layout for an LR image of ``height`` x ``width``: no top/left padding, each side padded
    up to one tile when shorter, tiles row-major with stride ``tile - 2*overlap``."""
    for name, value in (("height", height), ("width", width), ("scale", scale)):
        require_positive_int(name, value)
    check_overlap(tile, overlap)
    padded_height, padded_width = max(height, tile), max(width, tile)
    stride = tile - 2 * overlap
    starts = tuple(
        (y, x)
        for y in axis_starts(padded_height, tile, stride)
        for x in axis_starts(padded_width, tile, stride)
    )
    return TilePlan(tile=tile, stride=stride, scale=scale, height=height, width=width, pad_top=0, pad_left=0,
                    padded_height=padded_height, padded_width=padded_width, starts=starts)


def pad_to_plan(lr: np.ndarray, plan: TilePlan) -> np.ndarray:
    """(C, H, W) -> (C, padded_height, padded_width) float32; numpy's reflect repeats itself for
    pads longer than the side and copies the edge of a 1-pixel side."""
    check_chw("LR image", lr, plan.height, plan.width)
    extra = (plan.padded_height - plan.height, plan.padded_width - plan.width)
    padded = np.asarray(lr, dtype=np.float32)
    if any(extra):
        padded = np.pad(padded, ((0, 0), (0, extra[0]), (0, extra[1])), mode="reflect")
    return np.ascontiguousarray(padded)


def keep_ranges(starts: list[int], tile: int, length: int) -> dict[int, tuple[int, int]]:
    """LR start of each tile on one axis -> the [begin, end) LR range it contributes, cut in the
    middle of each overlap so both neighbours keep as much context as the layout allows."""
    ordered = sorted(set(starts))
    cuts = [0] + [(a + tile + b) // 2 for a, b in zip(ordered[:-1], ordered[1:], strict=True)] + [length]
    return {s: (cuts[i], cuts[i + 1]) for i, s in enumerate(ordered)}


class TileStitcher:
    """Places each SR tile's kept part into the padded SR image; every pixel is written exactly once."""

    def __init__(self, plan: TilePlan, channels: int = 3):
        self.plan = plan
        self.channels = channels
        self.sr_tile = plan.scale * plan.tile
        self._rows = keep_ranges([y for y, _ in plan.starts], plan.tile, plan.padded_height)
        self._cols = keep_ranges([x for _, x in plan.starts], plan.tile, plan.padded_width)
        shape = (plan.scale * plan.padded_height, plan.scale * plan.padded_width)
        self._image = np.zeros((channels, *shape), dtype=np.float32)
        self._written = np.zeros(shape, dtype=np.uint8)

    def add(self, sr_tiles: np.ndarray, starts: list[tuple[int, int]]) -> None:
        expected = (len(starts), self.channels, self.sr_tile, self.sr_tile)
        if sr_tiles.shape != expected:
            raise SRError(f"SR tiles must have shape {expected}, got {sr_tiles.shape}")
        s = self.plan.scale
        for tile, (y, x) in zip(sr_tiles, starts, strict=True):
            if y not in self._rows or x not in self._cols:
                raise SRError(f"tile start {(y, x)} is not in the tile plan")
            (y0, y1), (x0, x1) = self._rows[y], self._cols[x]
            out = (slice(s * y0, s * y1), slice(s * x0, s * x1))
            self._image[:, out[0], out[1]] = tile[:, s * (y0 - y):s * (y1 - y), s * (x0 - x):s * (x1 - x)]
            self._written[out] += 1

    def result(self) -> np.ndarray:
        """(C, scale*padded_height, scale*padded_width) float32."""
        if not np.all(self._written == 1):
            raise SRError(f"{int(np.count_nonzero(self._written != 1))} output pixels were not written exactly once "
                          "(were all tiles added?)")
        return self._image


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
    if image.ndim != 3 or image.shape[2] != 3:
        raise SRError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    lr = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
    plan = plan_crop_tiles(lr.shape[1], lr.shape[2], tile, overlap, scale)
    stitcher = TileStitcher(plan)
    done, total = 0, len(plan.starts)
    for tiles, starts in iter_tile_batches(pad_to_plan(lr, plan), plan, batch):
        stitcher.add(np.asarray(run_tiles(tiles), dtype=np.float32), starts)
        done += len(starts)
        if on_tiles_done is not None:
            on_tiles_done(done, total)
    sr = crop_output(stitcher.result(), plan)
    return np.clip(sr, 0.0, 1.0).transpose(1, 2, 0).copy()
