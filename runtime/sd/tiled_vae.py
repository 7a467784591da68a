"""The official tiled VAE (``src/my_utils/vaehook.py``, ``VAEHook`` without its fast modes, as S3Diff sets it
up): the input is cut into tiles with a margin, every tile runs the network segment by segment, and each
group norm uses statistics gathered over all tiles (the per-tile variances and means, weighted by tile
pixels) before any tile goes on; each finished tile drops its margin into the output.

The segments (``VAESegment``) end where the network's next group norm starts; one graph runs each.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from .vae_segment import VAESegment

# VAEHook's margins: image px around an encoder tile, latent px around a decoder tile.
ENCODER_PAD = 32
DECODER_PAD = 11


@dataclass(frozen=True)
class Box:
    """[x0, x1) x [y0, y1), as the official's [x1, x2, y1, y2] lists."""

    x0: int
    x1: int
    y0: int
    y1: int

    def cut(self, array: np.ndarray) -> np.ndarray:
        return array[:, :, self.y0:self.y1, self.x0:self.x1]

    def scaled(self, factor: int, up: bool) -> Box:
        def f(v: int) -> int:
            return v * factor if up else v // factor

        return Box(f(self.x0), f(self.x1), f(self.y0), f(self.y1))


@dataclass(frozen=True)
class VAETile:
    source: Box  # the tile with its margin, in input px
    target: Box  # what it contributes to the output, in output px
    reach: Box  # the source box scaled to output px: what the tile's output covers, margin included

    def valid_region(self, x: np.ndarray) -> np.ndarray:
        """crop_valid_region: the tile's output less what came from its margin."""
        height, width = x.shape[2:]
        return x[:, :, self.target.y0 - self.reach.y0:height + self.target.y1 - self.reach.y1,
                 self.target.x0 - self.reach.x0:width + self.target.x1 - self.reach.x1]


def tiled(height: int, width: int, tile: int, pad: int) -> bool:
    """VAEHook's switch: the untiled network when the input fits one tile and its margins."""
    return max(height, width) > 2 * pad + tile


def _best_tile_size(lower: int, upper: int) -> int:
    divider = 32
    while divider >= 2:
        remainder = lower % divider
        if remainder == 0:
            return lower
        candidate = lower - remainder + divider
        if candidate <= upper:
            return candidate
        divider //= 2
    return lower


def split_tiles(height: int, width: int, tile: int, pad: int, factor: int, upscales: bool) -> list[VAETile]:
    """VAEHook.split_tiles: rows of tiles, the tile size shrunk to even them out, the margin dropped at borders."""
    rows = max(math.ceil((height - 2 * pad) / tile), 1)
    columns = max(math.ceil((width - 2 * pad) / tile), 1)
    tile_h = _best_tile_size(math.ceil((height - 2 * pad) / rows), tile)
    tile_w = _best_tile_size(math.ceil((width - 2 * pad) / columns), tile)
    tiles = []
    for i in range(rows):
        for j in range(columns):
            core = Box(pad + j * tile_w, min(pad + (j + 1) * tile_w, width),
                       pad + i * tile_h, min(pad + (i + 1) * tile_h, height))
            target = Box(core.x0 if core.x0 > pad else 0, core.x1 if core.x1 < width - pad else width,
                         core.y0 if core.y0 > pad else 0, core.y1 if core.y1 < height - pad else height)
            source = Box(max(0, core.x0 - pad), min(width, core.x1 + pad), max(0, core.y0 - pad),
                         min(height, core.y1 + pad))
            tiles.append(VAETile(source, target.scaled(factor, upscales), source.scaled(factor, upscales)))
    return tiles


def group_statistics(x: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """(variance, mean) per (image, group), biased, as float32 (get_var_mean); in float64 one group at a time, so
    a large tile is never copied whole."""
    flat = x.reshape(x.shape[0], groups, -1)
    variance, mean = np.empty(flat.shape[:2], np.float32), np.empty(flat.shape[:2], np.float32)
    for index in np.ndindex(*flat.shape[:2]):
        centre = flat[index].mean(dtype=np.float64)
        mean[index] = centre
        variance[index] = np.square(flat[index] - centre).mean()
    return variance, mean


def _summary(stats: list[tuple[np.ndarray, np.ndarray]], pixels: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """GroupNormParam.summary: the tiles' variances and means weighted by their share of the pixels."""
    share = np.asarray(pixels, np.float32) / np.float32(max(pixels))
    share = (share / share.sum())[:, None, None]
    variance = (np.stack([v for v, _ in stats]) * share).sum(axis=0, dtype=np.float32)
    mean = (np.stack([m for _, m in stats]) * share).sum(axis=0, dtype=np.float32)
    return variance, mean


# (segment index, graph inputs: x, and mean / var / residual / per-tile extras as the segment takes them)
# -> its output, the pending residual packed after the segment's out_channels
SegmentRunner = Callable[[int, Mapping[str, np.ndarray]], np.ndarray]


def run_tiled(inputs: Mapping[str, np.ndarray], segments: list[VAESegment], run_segment: SegmentRunner,
              tiles: list[VAETile], output_shape: tuple[int, int]) -> np.ndarray:
    """``inputs`` (``x`` and the first segment's other per-pixel inputs, each (1, C, H, W)) through every
    segment tile by tile -> the assembled (1, C', *output_shape) output."""
    states: list[dict[str, np.ndarray]] = [{name: tile.source.cut(a) for name, a in inputs.items()} for tile in tiles]
    statistics: tuple[np.ndarray, np.ndarray] | None = None
    for index, segment in enumerate(segments):
        gathered, pixels = [], []
        for state in states:
            if statistics is not None:
                state["var"], state["mean"] = statistics
            packed = run_segment(index, state)
            state.clear()
            state["x"] = packed[:, :segment.out_channels]
            if segment.residual_out is not None:
                state["residual"] = packed[:, segment.out_channels:]
            if segment.next_groups is not None:
                gathered.append(group_statistics(state["x"], segment.next_groups))
                pixels.append(state["x"].shape[2] * state["x"].shape[3])
        statistics = _summary(gathered, pixels) if gathered else None
    channels = states[0]["x"].shape[1]
    result = np.zeros((1, channels, *output_shape), np.float32)
    for tile, state in zip(tiles, states, strict=True):
        result[:, :, tile.target.y0:tile.target.y1, tile.target.x0:tile.target.x1] = tile.valid_region(state["x"])
    return result

