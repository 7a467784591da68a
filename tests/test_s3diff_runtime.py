"""S3Diff's runtime side without networks: the official tilings, the preprocessing, the options and the memory
estimate (against tracemalloc), with numpy stand-ins for the engines."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_resources import _peak

from sr_runtime.backends.base import ChainId, plan_key
from sr_runtime.errors import SRError
from sr_runtime.families.s3diff.chain import DEGRADE, WHOLE, s3diff_plan
from sr_runtime.families.s3diff.cost import image_cost
from sr_runtime.families.s3diff.image_loop import Tiling, upscale_image
from sr_runtime.families.s3diff.options import S3DiffOptions
from sr_runtime.families.s3diff.preprocess import bilinear_upscale, vae_input
from sr_runtime.families.s3diff.section import S3DiffSection
from sr_runtime.sd import latent_tiles
from sr_runtime.sd.one_step import DECODE, DENOISE, ENCODE
from sr_runtime.sd.tiled_vae import split_tiles
from sr_runtime.sd.vae_graphs import DECODER, ENCODER, segment_chain, segment_name
from sr_runtime.sd.vae_segment import Resize, VAESegment


def _official_grid(h: int, w: int, tile_size: int, tile_overlap: int) -> list[tuple[int, int]]:
    """S3Diff.forward's tile loops, transcribed (rows walk x, columns walk y)."""
    tile_size = min(tile_size, min(h, w))
    grid_rows = 0
    cur_x = 0
    while cur_x < w:
        cur_x = max(grid_rows * tile_size - tile_overlap * grid_rows, 0) + tile_size
        grid_rows += 1
    grid_cols = 0
    cur_y = 0
    while cur_y < h:
        cur_y = max(grid_cols * tile_size - tile_overlap * grid_cols, 0) + tile_size
        grid_cols += 1
    origins = []
    for row in range(grid_rows):
        for col in range(grid_cols):
            if col < grid_cols - 1 or row < grid_rows - 1:
                ofs_x = max(row * tile_size - tile_overlap * row, 0)
                ofs_y = max(col * tile_size - tile_overlap * col, 0)
            if row == grid_rows - 1:
                ofs_x = w - tile_size
            if col == grid_cols - 1:
                ofs_y = h - tile_size
            origins.append((ofs_y, ofs_x))
    return origins


@pytest.mark.parametrize(("h", "w", "tile", "overlap"), [(200, 130, 96, 32), (64, 300, 96, 32), (97, 97, 96, 32),
                                                           (40, 41, 16, 4)])
def test_the_latent_grid_is_the_officials(h, w, tile, overlap):
    side, origins = latent_tiles.tile_origins(h, w, tile, overlap)
    assert side == min(tile, h, w) and origins == _official_grid(h, w, tile, overlap)


def test_the_gaussian_is_the_officials_with_its_off_centre_rows():
    size = 12
    var = 0.01
    x_probs = [math.exp(-(x - (size - 1) / 2) ** 2 / (size * size) / (2 * var)) / math.sqrt(2 * math.pi * var)
               for x in range(size)]
    y_probs = [math.exp(-(y - size / 2) ** 2 / (size * size) / (2 * var)) / math.sqrt(2 * math.pi * var)
               for y in range(size)]
    np.testing.assert_allclose(latent_tiles.gaussian_weights(size), np.outer(y_probs, x_probs), rtol=1e-12)


def test_an_overlap_the_tiles_cannot_take_is_refused_instead_of_looping_forever():
    with pytest.raises(SRError, match="latent overlap 32"):
        latent_tiles.tile_origins(20, 400, 96, 32)
    with pytest.raises(SRError, match="must be below the latent tile"):
        S3DiffOptions(latent_tile=16, latent_overlap=16)


def test_bilinear_and_padding_match_torch():
    lr = np.random.default_rng(0).random((3, 13, 19), dtype=np.float32)
    want = F.interpolate(torch.from_numpy(lr)[None], size=(52, 76), mode="bilinear", align_corners=False)[0].numpy()
    got = bilinear_upscale(lr)
    np.testing.assert_allclose(got, want, atol=2e-7)
    padded = F.pad(torch.clamp(torch.from_numpy(want)[None] * 2 - 1, -1, 1), (0, 52, 0, 12), mode="reflect").numpy()
    np.testing.assert_allclose(vae_input(got), padded, atol=5e-7)


def test_vae_tiles_cover_the_output_once():
    tiles = split_tiles(40, 72, 16, 11, 8, upscales=True)
    cover = np.zeros((320, 576), int)
    for t in tiles:
        cover[t.target.y0:t.target.y1, t.target.x0:t.target.x1] += 1
        assert t.reach.y0 <= t.target.y0 and t.target.y1 <= t.reach.y1
    assert (cover == 1).all() and len(tiles) == 2 * 4  # ceil((40 - 22) / 16) x ceil((72 - 22) / 16)


@pytest.mark.parametrize("options", [dict(color_fix="ycbcr"), dict(seed=-1), dict(latent_tile=0), dict(color_fix="x")])
def test_bad_options_are_refused(options):
    with pytest.raises(SRError):
        S3DiffOptions(**options)


def _segments(first: int, last: int, groups: int = 4, width: int = 8, resizes=(Resize.DOWN,) * 3) -> list[VAESegment]:
    """first -> [norm, conv (residual pending) | norm, conv, add, resize] per level -> last."""
    segments = [VAESegment(first, width, None, groups, None, width, Resize.NONE)]
    for resize in resizes:
        segments += [VAESegment(width, width, groups, groups, width, width, Resize.NONE),
                     VAESegment(width, width, groups, groups, width, None, resize)]
    segments.append(VAESegment(width, last, groups, None, None, None, Resize.NONE))
    return segments


SECTION = S3DiffSection(
    latent_channels=4, latent_scale=0.18215, vae_factor=8, timestep=999, guidance_scale=1.07, sqrt_alpha_prod=0.07,
    sqrt_beta_prod=0.99, clip_sample_range=None, lora_rank_unet=8, lora_rank_vae=4, positive_prompt="p",
    negative_prompt="n", embed_shape=[2, 77, 32], encoder_segments=_segments(3, 8),
    decoder_segments=_segments(4, 3, resizes=(Resize.UP,) * 3))


class NumpyStages:
    """Stand-ins of the engines with the real shapes."""

    def whole(self, lr, image, noise):
        return np.full((1, 3, *image.shape[2:]), 0.5, np.float32)

    def degrade(self, lr):
        return np.full((1, 2), 0.5, np.float32)

    def encode(self, image, deg_score, noise):
        return np.zeros((1, 4, image.shape[2] // 8, image.shape[3] // 8), np.float32)

    def denoise(self, latents, deg_score):
        return latents + 1

    def decode(self, latent, eps):
        return np.full((1, 3, latent.shape[2] * 8, latent.shape[3] * 8), 0.5, np.float32)

    def segment(self, kind, index, inputs):
        s = (SECTION.encoder_segments if kind == "encoder" else SECTION.decoder_segments)[index]
        x = inputs["x"]
        return np.full((1, s.out_channels + (s.residual_out or 0), s.out_size(x.shape[2]), s.out_size(x.shape[3])), 0.25,
                       np.float32)


@pytest.mark.parametrize("color_fix", [None, "none"])
@pytest.mark.parametrize(("height", "width", "tiles"), [
    (150, 110, {}),
    (150, 110, dict(vae_encoder_tile=128, vae_decoder_tile=16, latent_tile=24, latent_overlap=8)),
    (90, 260, dict(vae_decoder_tile=20)),
])
def test_the_estimate_covers_the_loops_peak_and_not_much_more(height, width, tiles, color_fix):
    options = S3DiffOptions(color_fix=color_fix, **tiles)
    image = np.random.default_rng(0).random((height, width, 3), dtype=np.float32)
    peak = _peak(lambda: upscale_image(image, NumpyStages(), SECTION, options, batch=2))
    cost = image_cost(height, width, SECTION, options)
    assert peak <= cost.memory <= 1.5 * peak, (peak, cost.memory)
    assert cost.tiles == Tiling(height, width, SECTION, options).unet_tiles


def test_images_too_small_for_the_official_padding_are_refused():
    with pytest.raises(SRError, match="at least 9 px"):
        upscale_image(np.zeros((8, 40, 3), np.float32), NumpyStages(), SECTION, S3DiffOptions(), batch=1)


def test_each_chain_is_fed_under_the_names_of_what_it_takes():
    """A chain's host feeds are its graphs' inputs, its main feed (which sizes the plan) first; the graphs' own
    tensor names are bound unchanged."""
    embeds = np.zeros((2, 77, 32), np.float32)
    for chain, feeds in [(WHOLE, ("lr", "image", "noise")), (DEGRADE, ("lr",)), (ENCODE, ("image", "deg_score", "noise")),
                         (DENOISE, ("latent", "deg_score")), (DECODE, ("latent", "eps"))]:
        plan = s3diff_plan(SECTION, embeds, chain, 2, 16, 16)
        assert plan.feeds == feeds and chain.main_feed == feeds[0], chain
        assert all(tensor == buffer for call in plan.calls for tensor, buffer in call.inputs.items()), chain
    for kind, segments in ((ENCODER, SECTION.encoder_segments), (DECODER, SECTION.decoder_segments)):
        for index in range(len(segments)):
            chain = segment_chain(kind, index)
            (call,) = s3diff_plan(SECTION, embeds, chain, 2, 16, 16).calls
            assert call.graph == segment_name(kind, index) and chain.main_feed == "x"
            assert all(tensor == buffer for tensor, buffer in call.inputs.items())
    has = ("it has whole, degrade, encode, denoise, decode, vae_encoder_segment (index 0 to 7), vae_decoder_segment "
           "(index 0 to 7)")
    for chain in (segment_chain(ENCODER, 8), ChainId("denoise"), ChainId("vae_encoder_segment", 0), ChainId("tiles")):
        with pytest.raises(SRError, match=rf"^the S3Diff bundle has no chain {chain.name}.*; {re.escape(has)}$"):
            s3diff_plan(SECTION, embeds, chain, 2, 16, 16)
    latents = {"latent": np.zeros((3, 4, 5, 6), np.float32), "deg_score": np.zeros((3, 2), np.float32)}
    assert plan_key(latents, DENOISE) == (DENOISE, 3, 5, 6)
    assert plan_key(latents, DENOISE, batch=4) == (DENOISE, 4, 5, 6)  # padded to a fixed batch
    tokens = ChainId("embed", main_feed="input_ids")
    assert plan_key({"input_ids": np.zeros((1, 77), np.float32)}, tokens) == (tokens, 1, 0, 77)
    with pytest.raises(SRError, match="chain denoise is fed 'latent' per tile batch, got lr"):
        plan_key({"lr": latents["latent"]}, DENOISE)
