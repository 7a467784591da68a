"""InvSR's padding, tiling and Gaussian blending (``sampler_invsr.sample_func`` + ``ImageSpliterTh``).

The geometry mirrors the official sampler exactly, so that an engine fed these tiles sees the same
pixels the PyTorch pipeline would:

1. while the short side is below the tile size, reflect-pad centred (clamped so each pad is smaller
   than the side, which is why it can take several rounds); the top/left pads are accumulated;
2. reflect-pad bottom/right to multiples of ``multiple`` (the official ``mod_lq``, 16 for SD-Turbo;
   a no-op when step 1 gave exactly tile x tile, the case the official runs as one whole-image call:
   here that is the single tile at (0, 0));
3. tiles of ``tile`` LR pixels with stride ``tile // 2``, the last start of an axis moved back so the
   tile ends on the border; row-major over (y, x);
4. SR tiles are blended with a separable Gaussian weight (float64, one band of rows at a time), then
   the padding is cropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ...checks import require_positive_int
from ...crop_tiling import axis_starts
from ...errors import SRError


@dataclass(frozen=True)
class TilePlan:
    tile: int
    stride: int
    scale: int
    height: int  # original LR size
    width: int
    pad_top: int  # accumulated centred reflect padding of the small-image loop
    pad_left: int
    padded_height: int  # LR size after all padding (small-image loop, then bottom/right to a multiple)
    padded_width: int
    starts: tuple[tuple[int, int], ...]  # (y, x) LR tile origins, row-major


# One round of the small-image loop: (top, bottom, left, right) reflect padding.
PadRound = tuple[int, int, int, int]


def _centred_pad(side: int, tile: int) -> tuple[int, int]:
    # Each pad is clamped to side - 1 because reflect padding cannot reach past the opposite edge.
    before = max(min((tile - side) // 2, side - 1), 0)
    after = max(min(tile - side - before, side - 1), 0)
    return before, after


def _small_image_rounds(height: int, width: int, tile: int) -> list[PadRound]:
    rounds: list[PadRound] = []
    while min(height, width) < tile:
        top, bottom = _centred_pad(height, tile)
        left, right = _centred_pad(width, tile)
        rounds.append((top, bottom, left, right))
        height += top + bottom
        width += left + right
    return rounds


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def plan_tiles(height: int, width: int, tile: int = 128, scale: int = 4, multiple: int = 16) -> TilePlan:
    """The official padding and tile layout for an LR image of ``height`` x ``width``."""
    for name, value in (("height", height), ("width", width), ("tile", tile), ("scale", scale),
                        ("multiple", multiple)):
        require_positive_int(name, value)
    if tile % multiple or tile < 2:  # below 2 the stride tile // 2 would be 0
        raise SRError(f"tile size {tile} must be a multiple of {multiple} and at least 2")
    if min(height, width) == 1:
        # The official loop would never terminate: a 1-pixel side admits no reflect padding.
        raise SRError(f"image of {width}x{height} pixels is too small: each side needs at least 2 pixels")

    rounds = _small_image_rounds(height, width, tile)
    # The official skips this rounding (and tiling) when the loop produced exactly tile x tile; as the
    # tile is a multiple of ``multiple`` the rounding is then a no-op and the layout is the single tile.
    padded_height = _round_up(height + sum(r[0] + r[1] for r in rounds), multiple)
    padded_width = _round_up(width + sum(r[2] + r[3] for r in rounds), multiple)

    stride = tile // 2
    starts = tuple(
        (y, x)
        for y in axis_starts(padded_height, tile, stride)
        for x in axis_starts(padded_width, tile, stride)
    )
    return TilePlan(
        tile=tile,
        stride=stride,
        scale=scale,
        height=height,
        width=width,
        pad_top=sum(r[0] for r in rounds),
        pad_left=sum(r[2] for r in rounds),
        padded_height=padded_height,
        padded_width=padded_width,
        starts=starts,
    )


def check_chw(name: str, array: np.ndarray, height: int, width: int) -> None:
    if array.ndim != 3 or array.shape[1:] != (height, width):
        raise SRError(f"{name} must have shape (C, {height}, {width}), got {array.shape}")


def pad_image(lr: np.ndarray, plan: TilePlan) -> np.ndarray:
    """(C, H, W) -> (C, padded_height, padded_width) float32, reflect-padded as the official does."""
    check_chw("LR image", lr, plan.height, plan.width)
    padded = np.asarray(lr, dtype=np.float32)
    # Rounds are applied one at a time: later rounds reflect content that earlier rounds created.
    for top, bottom, left, right in _small_image_rounds(plan.height, plan.width, plan.tile):
        padded = np.pad(padded, ((0, 0), (top, bottom), (left, right)), mode="reflect")
    extra_bottom = plan.padded_height - padded.shape[1]
    extra_right = plan.padded_width - padded.shape[2]
    if extra_bottom or extra_right:
        padded = np.pad(padded, ((0, 0), (0, extra_bottom), (0, extra_right)), mode="reflect")
    return np.ascontiguousarray(padded)


def iter_tile_batches(
    padded: np.ndarray, plan: TilePlan, batch: int
) -> Iterator[tuple[np.ndarray, list[tuple[int, int]]]]:
    """Yields ((n, C, tile, tile) float32, their (y, x) LR starts) with n <= batch, in official order."""
    require_positive_int("batch", batch)
    check_chw("padded image", padded, plan.padded_height, plan.padded_width)
    size = plan.tile
    for first in range(0, len(plan.starts), batch):
        starts = list(plan.starts[first:first + batch])
        tiles = np.stack([padded[:, y:y + size, x:x + size] for y, x in starts])
        yield tiles.astype(np.float32, copy=False), starts


def gaussian_weights_1d(size: int) -> np.ndarray:
    """The official ``generate_kernel_1d``: OpenCV's ``getGaussianKernel`` with its default sigma.

    For an even size the official asks OpenCV for size + 1 taps and drops the first one, so the
    peak sits at size/2 - 1 and the taps are normalised over size + 1 values (not renormalised).
    """
    require_positive_int("size", size)
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    taps = size + 1 if size % 2 == 0 else size
    offsets = np.arange(taps, dtype=np.float64) - (taps - 1) * 0.5
    kernel = np.exp(-(offsets**2) / (2.0 * sigma**2))
    kernel /= kernel.sum()
    return kernel[taps - size:]


class TileBlender:
    """The official update/gather: SR tiles weighted by a Gaussian, summed in float64, divided by the
    summed weights. Tiles come in row-major order, so rows above the current tile row get no more tiles:
    they are divided and stored as float32 at once, and only a band of rows (one tile row and its
    overlap) is ever held in float64, not the whole image."""

    def __init__(self, plan: TilePlan, channels: int = 3):
        require_positive_int("channels", channels)
        self.plan = plan
        self.channels = channels
        self.sr_tile = plan.scale * plan.tile
        width = plan.scale * plan.padded_width
        self._out = np.empty((channels, plan.scale * plan.padded_height, width), dtype=np.float32)
        self._top = 0  # SR row of the band's first row; rows above it are in _out
        self._sum = np.zeros((channels, 0, width), dtype=np.float64)
        # The official keeps one weight map per channel; they are identical, so one is enough.
        self._weights = np.zeros((0, width), dtype=np.float64)
        gauss = gaussian_weights_1d(self.sr_tile)
        self._weight = np.outer(gauss, gauss)

    def _grow(self, bottom: int) -> None:
        missing = bottom - self._top - self._weights.shape[0]
        if missing > 0:
            width = self._weights.shape[1]
            self._sum = np.concatenate([self._sum, np.zeros((self.channels, missing, width))], axis=1)
            self._weights = np.concatenate([self._weights, np.zeros((missing, width))])

    def _finish(self, bottom: int) -> None:
        """Divides rows up to ``bottom`` (SR rows) and drops them from the band."""
        rows = bottom - self._top
        if rows <= 0:
            return
        self._grow(bottom)
        uncovered = int(np.count_nonzero(self._weights[:rows] == 0))
        if uncovered:
            raise SRError(f"{uncovered} output pixels are not covered by any tile (were all tiles added?)")
        self._out[:, self._top:bottom] = self._sum[:, :rows] / self._weights[:rows]
        self._sum, self._weights = self._sum[:, rows:], self._weights[rows:]
        self._top = bottom

    def add(self, sr_tiles: np.ndarray, starts: list[tuple[int, int]]) -> None:
        """``sr_tiles`` (n, C, scale*tile, scale*tile) for the LR tile origins ``starts``."""
        expected = (len(starts), self.channels, self.sr_tile, self.sr_tile)
        if sr_tiles.shape != expected:
            raise SRError(f"SR tiles must have shape {expected}, got {sr_tiles.shape}")
        size, scale = self.sr_tile, self.plan.scale
        for tile, (y, x) in zip(sr_tiles, starts, strict=True):
            if not (0 <= y <= self.plan.padded_height - self.plan.tile
                    and 0 <= x <= self.plan.padded_width - self.plan.tile):
                raise SRError(f"tile start {(y, x)} lies outside the padded image")
            if scale * y < self._top:
                raise SRError(f"tile start {(y, x)} comes after a later tile row (tiles are blended in row-major order)")
            self._finish(scale * y)
            self._grow(scale * y + size)
            rows = slice(scale * y - self._top, scale * y - self._top + size)
            cols = slice(scale * x, scale * x + size)
            self._sum[:, rows, cols] += tile.astype(np.float64) * self._weight
            self._weights[rows, cols] += self._weight

    def result(self) -> np.ndarray:
        """(C, scale*padded_height, scale*padded_width) float32: sum(W*y) / sum(W), rounded once."""
        self._finish(self._out.shape[1])
        return self._out


def crop_output(sr: np.ndarray, plan: TilePlan) -> np.ndarray:
    """Removes the padding: (C, scale*padded_height, scale*padded_width) -> (C, scale*height, scale*width)."""
    scale = plan.scale
    check_chw("SR image", sr, scale * plan.padded_height, scale * plan.padded_width)
    top, left = scale * plan.pad_top, scale * plan.pad_left
    return sr[:, top:top + scale * plan.height, left:left + scale * plan.width]
