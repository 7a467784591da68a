"""The image-level loop of ResShift and SinSR, shared by the PyTorch reference and the engine runtime.

The official ``inference`` with ``ImageSpliterTh`` and ``sample_func``: an image with a side above the
chop size is cut into patches of min(chop, side) LR px at the chop stride (each axis' last start moved
back so the patch ends on the border; row-major, height outer), otherwise it is one patch. Each patch is
reflect-padded bottom/right to multiples of the pad multiple and upscaled at that size, its output
cropped and clamped to [-1, 1]; overlapping outputs are averaged with equal weights (float32, in patch
order), then mapped to [0, 1]. Only the network chain differs between the two sides: ``run_batch``.

A patch side below half the pad multiple cannot be reflect-padded by torch (the official sampler stops
there); numpy keeps reflecting, which is what we do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from ...backends.base import LR_FEED
from ...checks import check_rgb_image, require_positive_int
from ...crop_tiling import axis_starts
from ...family import TileProgress
from ...resources import ImageCost
from .chain import noise_feeds
from .graphs import SCALE
from .noise import PatchNoise
from .options import Chopping, ResShiftOptions
from .section import ResShiftSection

# A patch batch's feeds (``chain.feed_names``) -> its SR patches (n, 3, 4h, 4w), about [-1, 1], unclamped.
BatchRunner = Callable[[Mapping[str, np.ndarray]], np.ndarray]


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


@dataclass(frozen=True)
class PatchLayout:
    height: int  # the LR image
    width: int
    patch_height: int  # min(chop size, side): every patch of an image has this size
    patch_width: int
    padded_height: int  # the patch after reflect padding: what the networks see
    padded_width: int
    starts: tuple[tuple[int, int], ...]  # (y, x) LR origins, row-major


def plan_patches(height: int, width: int, chopping: Chopping, pad_multiple: int) -> PatchLayout:
    for name, value in (("height", height), ("width", width), ("pad multiple", pad_multiple)):
        require_positive_int(name, value)
    size, stride = chopping.size, chopping.stride
    patch_height, patch_width = min(size, height), min(size, width)
    starts = tuple((y, x) for y in axis_starts(height, size, stride) for x in axis_starts(width, size, stride))
    return PatchLayout(height, width, patch_height, patch_width, _round_up(patch_height, pad_multiple),
                       _round_up(patch_width, pad_multiple), starts)


def iter_patch_batches(lr: np.ndarray, layout: PatchLayout, batch: int) -> Iterator[tuple[np.ndarray, list]]:
    """((n, 3, padded h, padded w) reflect-padded LR patches, their starts), n <= batch, in order."""
    require_positive_int("batch", batch)
    h, w = layout.patch_height, layout.patch_width
    pad = ((0, 0), (0, layout.padded_height - h), (0, layout.padded_width - w))
    for first in range(0, len(layout.starts), batch):
        starts = list(layout.starts[first:first + batch])
        patches = [np.pad(lr[:, y:y + h, x:x + w], pad, mode="reflect") for y, x in starts]
        yield np.stack(patches).astype(np.float32, copy=False), starts


def batch_feeds(patches: np.ndarray, noise: PatchNoise, section: ResShiftSection) -> dict[str, np.ndarray]:
    """The chain's feeds for a patch batch: each patch's draws are made in full before the next patch's,
    and each patch's last draw (after the last UNet call) is dropped."""
    shape = (1, section.latent_channels, *patches.shape[2:])
    draws = [noise.patch(shape) for _ in patches]
    names = noise_feeds(len(section.steps))
    return {LR_FEED: patches, **{name: np.concatenate([d[i] for d in draws]) for i, name in enumerate(names)}}


def upscale_image(image: np.ndarray, run_batch: BatchRunner, section: ResShiftSection, options: ResShiftOptions,
                  chopping: Chopping, batch: int, on_tiles_done: TileProgress | None = None) -> np.ndarray:
    """``image`` (H,W,3) float32 in [0,1] -> (4H,4W,3) float32 in [0,1]."""
    check_rgb_image(image)
    lr = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
    layout = plan_patches(lr.shape[1], lr.shape[2], chopping, section.pad_multiple)
    noise = PatchNoise(options.noise_seed, len(section.steps) + 1)
    out_h, out_w = SCALE * layout.patch_height, SCALE * layout.patch_width
    total = np.zeros((3, SCALE * layout.height, SCALE * layout.width), np.float32)
    count = np.zeros(total.shape[1:], np.float32)
    done = 0
    for patches, starts in iter_patch_batches(lr, layout, batch):
        sr = np.asarray(run_batch(batch_feeds(patches, noise, section)), np.float32)
        for patch, (y, x) in zip(sr[:, :, :out_h, :out_w], starts, strict=True):
            rows, cols = slice(SCALE * y, SCALE * y + out_h), slice(SCALE * x, SCALE * x + out_w)
            total[:, rows, cols] += np.clip(patch, -1.0, 1.0)
            count[rows, cols] += 1.0
        done += len(starts)
        if on_tiles_done is not None:
            on_tiles_done(done, len(layout.starts))
    # In place, in the official's float32 order: sum / count, then * 0.5 + 0.5.
    total /= count
    total *= np.float32(0.5)
    total += np.float32(0.5)
    return np.ascontiguousarray(np.clip(total, 0.0, 1.0, out=total).transpose(1, 2, 0))


# Host bytes per SR pixel at the loop's peak: the float32 sums (12), the counts (4), the HWC result (12).
BYTES_PER_SR_PIXEL = 28


def image_cost(height: int, width: int, chopping: Chopping, section: ResShiftSection, batch: int) -> ImageCost:
    """The loop's peak host memory (tracemalloc): the per-pixel buffers, the LR copy, and one patch batch:
    its LR patches, noise draws (each made, then stacked) and SR patches."""
    layout = plan_patches(height, width, chopping, section.pad_multiple)
    patches = min(batch, len(layout.starts))
    patch_px = layout.padded_height * layout.padded_width
    draws = 2 * section.latent_channels * (len(section.steps) + 1)
    per_batch = 4 * patches * patch_px * (3 + draws + 2 * 3 * SCALE * SCALE)
    sr_px = SCALE * height * SCALE * width
    return ImageCost(BYTES_PER_SR_PIXEL * sr_px + 12 * height * width + per_batch, len(layout.starts))
