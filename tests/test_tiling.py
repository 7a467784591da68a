"""Tiling geometry, padding and blending against an independent torch re-implementation of the official code."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sr_runtime.errors import SRError
from sr_runtime.families.invsr.tiling import (
    TileBlender,
    crop_output,
    gaussian_weights_1d,
    iter_tile_batches,
    pad_image,
    plan_tiles,
)

SCALE = 4


def official_pad(lr: np.ndarray, tile: int) -> tuple[torch.Tensor, int, int]:
    """sample_func's padding on a (1, C, H, W) tensor: (padded, accumulated top, accumulated left)."""
    im = torch.from_numpy(lr)[None]
    total_top = total_left = 0
    while min(im.shape[-2:]) < tile:
        h, w = im.shape[-2:]
        top = max(min((tile - h) // 2, h - 1), 0)
        bottom = max(min(tile - h - top, h - 1), 0)
        left = max(min((tile - w) // 2, w - 1), 0)
        right = max(min(tile - w - left, w - 1), 0)
        im = F.pad(im, pad=(left, right, top, bottom), mode="reflect")
        total_top += top
        total_left += left
    if im.shape[-2:] != (tile, tile):
        h, w = im.shape[-2:]
        im = F.pad(im, pad=(0, math.ceil(w / 16) * 16 - w, 0, math.ceil(h / 16) * 16 - h), mode="reflect")
    return im, total_top, total_left


def spec_starts(length: int, tile: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = [s if s + tile <= length else length - tile for s in range(0, length, tile // 2)]
    unique: list[int] = []
    for s in starts:
        if s not in unique:
            unique.append(s)
    return unique


def spec_gaussian(size: int) -> np.ndarray:
    """invsr-inference.md 4.3: OpenCV kernel of size+1 taps for even sizes, first tap dropped."""
    sigma = 0.3 * ((size - 1) / 2 - 1) + 0.8
    if size % 2:
        d = np.arange(size) - (size - 1) / 2
        g = np.exp(-(d**2) / (2 * sigma**2))
        return g / g.sum()
    j = np.arange(-1, size)
    g = np.exp(-((j + 1 - size / 2) ** 2) / (2 * sigma**2))
    return (g / g.sum())[1:]


def official_blend(tiles: list[np.ndarray], starts: list[tuple[int, int]], out_hw: tuple[int, int]) -> np.ndarray:
    """ImageSpliterTh.update/gather in torch (float64), with per-channel weight maps as the official keeps."""
    acc = torch.zeros((3, *out_hw), dtype=torch.float64)
    count = torch.zeros((3, *out_hw), dtype=torch.float64)
    for tile, (y, x) in zip(tiles, starts, strict=True):
        size = tile.shape[-1]
        g = torch.from_numpy(spec_gaussian(size))
        weight = (g[:, None] @ g[None, :])[None]
        rows, cols = slice(SCALE * y, SCALE * y + size), slice(SCALE * x, SCALE * x + size)
        acc[:, rows, cols] += torch.from_numpy(tile).double() * weight
        count[:, rows, cols] += weight
    assert torch.all(count != 0)
    return (acc / count).numpy()


SIZES = [(50, 70), (100, 200), (128, 128), (129, 300), (208, 208), (127, 129), (2, 2), (3, 5), (2, 300), (16, 16)]


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_plan_and_padding_match_official(height, width):
    lr = np.random.default_rng(height * 1000 + width).random((3, height, width), dtype=np.float32)
    expected, top, left = official_pad(lr, 128)
    plan = plan_tiles(height, width)
    assert (plan.pad_top, plan.pad_left) == (top, left)
    assert (plan.padded_height, plan.padded_width) == tuple(expected.shape[-2:])
    assert plan.starts == tuple(
        (y, x) for y in spec_starts(plan.padded_height, 128) for x in spec_starts(plan.padded_width, 128)
    )
    padded = pad_image(lr, plan)
    assert padded.dtype == np.float32
    np.testing.assert_array_equal(padded, expected[0].numpy())


def test_known_geometry():
    small = plan_tiles(50, 70)  # centred padding reaches exactly 128 x 128: one whole-image call
    assert (small.pad_top, small.pad_left, small.padded_height, small.padded_width) == (39, 29, 128, 128)
    assert small.starts == ((0, 0),)
    wide = plan_tiles(100, 200)  # 128 x 200 after the loop, then 208 wide: the spec's [0, 64, 80]
    assert (wide.padded_height, wide.padded_width) == (128, 208)
    assert wide.starts == ((0, 0), (0, 64), (0, 80))
    big = plan_tiles(129, 300)
    assert (big.pad_top, big.pad_left, big.padded_height, big.padded_width) == (0, 0, 144, 304)
    assert big.starts == tuple((y, x) for y in (0, 16) for x in (0, 64, 128, 176))
    assert big.stride == 64


def test_tiny_image_needs_several_rounds():
    plan = plan_tiles(2, 2)  # sides grow 2 -> 4 -> 10 -> 28 -> 82 -> 128
    assert plan.pad_top == plan.pad_left == 1 + 3 + 9 + 27 + 23
    assert (plan.padded_height, plan.padded_width) == (128, 128)


def test_other_tile_sizes():
    plan = plan_tiles(300, 500, tile=256)
    assert plan.stride == 128
    assert (plan.padded_height, plan.padded_width) == (304, 512)
    assert plan.starts == tuple((y, x) for y in (0, 48) for x in (0, 128, 256))


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((1, 1), {}), ((1, 300), {}), ((300, 1), {}), ((0, 10), {}), ((10, 10), {"tile": 100}),
     ((10, 10), {"tile": 0}), ((10, 10), {"tile": 1, "multiple": 1}), ((10, 10), {"scale": 0}),
     ((10.0, 10), {})],
)
def test_plan_rejects_bad_arguments(args, kwargs):
    with pytest.raises(SRError) as err:
        plan_tiles(*args, **kwargs)
    assert "\n" not in str(err.value)


def test_pad_and_iter_reject_wrong_shapes():
    plan = plan_tiles(100, 200)
    with pytest.raises(SRError):
        pad_image(np.zeros((3, 200, 100), np.float32), plan)
    with pytest.raises(SRError):
        next(iter_tile_batches(np.zeros((3, 128, 200), np.float32), plan, 2))
    with pytest.raises(SRError):
        next(iter_tile_batches(pad_image(np.zeros((3, 100, 200), np.float32), plan), plan, 0))


def test_batches_follow_official_order():
    lr = np.random.default_rng(1).random((3, 150, 290), dtype=np.float32)
    plan = plan_tiles(150, 290)
    expected, _, _ = official_pad(lr, 128)
    batches = list(iter_tile_batches(pad_image(lr, plan), plan, batch=3))
    assert [len(starts) for _, starts in batches] == [3, 3, 2]  # 160 x 304 padded: 2 rows x 4 columns
    flat_starts = [s for _, starts in batches for s in starts]
    assert flat_starts == [(y, x) for y in (0, 32) for x in (0, 64, 128, 176)]
    for tiles, starts in batches:
        assert tiles.dtype == np.float32 and tiles.shape == (len(starts), 3, 128, 128)
        for tile, (y, x) in zip(tiles, starts, strict=True):
            np.testing.assert_array_equal(tile, expected[0, :, y:y + 128, x:x + 128].numpy())


@pytest.mark.parametrize("size", [512, 1024, 16, 5, 1])
def test_gaussian_weights_match_closed_form(size):
    weights = gaussian_weights_1d(size)
    assert weights.dtype == np.float64 and weights.shape == (size,)
    np.testing.assert_allclose(weights, spec_gaussian(size), rtol=1e-12, atol=0)


def test_gaussian_weights_shape_for_512():
    weights = gaussian_weights_1d(512)
    assert int(np.argmax(weights)) == 255  # K/2 - 1: even sizes are slightly asymmetric
    assert weights.sum() < 1.0  # normalised over 513 taps, one of which was dropped
    for edge in (weights[0], weights[-1]):
        assert 0.003 < edge / weights.max() < 0.005
    # sigma 77.15 (invsr-inference.md 4.3): the ratio to the peak is exp(-d^2 / (2 sigma^2))
    np.testing.assert_allclose(weights[255 + 100] / weights[255], math.exp(-(100**2) / (2 * 77.15**2)), rtol=1e-12)


@pytest.mark.parametrize(("height", "width"), [(100, 200), (50, 70), (129, 300)])
def test_blending_reproduces_a_consistent_image(height, width):
    plan = plan_tiles(height, width)
    hr = np.random.default_rng(7).random((3, SCALE * plan.padded_height, SCALE * plan.padded_width))
    blender = TileBlender(plan)
    padded = np.zeros((3, plan.padded_height, plan.padded_width), np.float32)
    size = SCALE * plan.tile
    for _, starts in iter_tile_batches(padded, plan, batch=2):
        tiles = np.stack([hr[:, SCALE * y:SCALE * y + size, SCALE * x:SCALE * x + size] for y, x in starts])
        blender.add(tiles.astype(np.float32), starts)
    result = blender.result()
    assert result.dtype == np.float32  # the float64 blend, rounded once
    np.testing.assert_array_equal(result, hr.astype(np.float32))


def test_blending_weights_overlaps_like_official():
    plan = plan_tiles(150, 290)
    rng = np.random.default_rng(3)
    size = SCALE * plan.tile
    # Tiles that disagree where they overlap, so the blend depends on the exact weights.
    tiles = [rng.random((3, size, size), dtype=np.float32) + i for i in range(len(plan.starts))]
    blender = TileBlender(plan)
    for first in range(0, len(tiles), 5):
        blender.add(np.stack(tiles[first:first + 5]), list(plan.starts[first:first + 5]))
    expected = official_blend(tiles, list(plan.starts), (SCALE * plan.padded_height, SCALE * plan.padded_width))
    np.testing.assert_allclose(blender.result(), expected.astype(np.float32), rtol=1e-7, atol=0)


def test_blender_rejects_uncovered_pixels_and_bad_tiles():
    plan = plan_tiles(100, 200)
    blender = TileBlender(plan)
    size = SCALE * plan.tile
    blender.add(np.zeros((1, 3, size, size), np.float32), [plan.starts[0]])
    with pytest.raises(SRError, match="not covered"):
        blender.result()
    with pytest.raises(SRError):
        blender.add(np.zeros((2, 3, size, size), np.float32), [plan.starts[1]])
    with pytest.raises(SRError):
        blender.add(np.zeros((1, 3, size // 2, size // 2), np.float32), [plan.starts[1]])
    with pytest.raises(SRError):
        blender.add(np.zeros((1, 3, size, size), np.float32), [(0, 96)])


@pytest.mark.parametrize(("height", "width"), [(50, 70), (100, 200), (3, 5), (129, 300)])
def test_pipeline_with_nearest_upscale_crops_back_to_the_input(height, width):
    # A "network" that repeats each LR pixel 4x4: after blend and crop we must get the input back,
    # which only holds if the crop offsets match the centred padding.
    lr = np.random.default_rng(11).random((3, height, width), dtype=np.float32)
    plan = plan_tiles(height, width)
    blender = TileBlender(plan)
    for tiles, starts in iter_tile_batches(pad_image(lr, plan), plan, batch=4):
        blender.add(tiles.repeat(SCALE, axis=2).repeat(SCALE, axis=3), starts)
    sr = crop_output(blender.result(), plan)
    assert sr.shape == (3, SCALE * height, SCALE * width)
    np.testing.assert_allclose(sr, lr.repeat(SCALE, axis=1).repeat(SCALE, axis=2), rtol=0, atol=1e-6)


def test_crop_rejects_wrong_shape():
    plan = plan_tiles(50, 70)
    with pytest.raises(SRError):
        crop_output(np.zeros((3, 200, 280)), plan)
