"""What upscaling an image with a one-step family costs on the host, known before it starts.

The loop holds a few full-size float32 images (the x4 image, the VAE input, the SR image and the colour fix's
intermediates: measured per pixel with tracemalloc) and what its stages hold (``one_step.run_staged``): the latent
tiles' blend and, while a tiled VAE runs, every tile's activation (and pending residual) at the current segment:
all tiles wait for the gathered group statistics."""

from __future__ import annotations

from ..resources import ImageCost
from .one_step import Tiling
from .tiled_vae import DECODER_PAD, ENCODER_PAD, VAETile, split_tiles
from .vae_segment import VAESegment

FLOAT = 4
# Host bytes per pixel of the VAE input at the untiled loop's peak (without and with a colour fix), and held while a
# tiled stage runs (the x4 image and the VAE input).
BYTES_PER_PIXEL = {False: 60, True: 152}
HELD_PER_PIXEL = 28


def _tiled_peak(tiles: list[VAETile], segments: list[VAESegment], output_pixels: int) -> int:
    """Every tile's state between segments: the old states, the new ones and one tile's fresh output."""
    sizes = [(t.source.y1 - t.source.y0, t.source.x1 - t.source.x0) for t in tiles]
    held = [0] * len(tiles)  # the first segment's inputs are views of the image
    peak = 0
    for segment in segments:
        sizes = [(segment.out_size(h), segment.out_size(w)) for h, w in sizes]
        fresh = [(segment.out_channels + (segment.residual_out or 0)) * h * w * FLOAT for h, w in sizes]
        peak = max(peak, sum(max(a, b) for a, b in zip(held, fresh, strict=True)) + max(fresh))
        held = fresh
    return max(peak, sum(held) + segments[-1].out_channels * output_pixels * FLOAT)


def staged_peak(tiling: Tiling, encoder_segments: list[VAESegment], decoder_segments: list[VAESegment],
                latent_channels: int) -> int:
    """The largest of the stages' own host bytes."""
    t, f = tiling.options, tiling.vae_factor
    image_pixels = tiling.image[0] * tiling.image[1]
    latent_pixels = tiling.latent[0] * tiling.latent[1]
    stages = [2 * (latent_channels + 1) * latent_pixels * 8]  # the latent tiles' float64 blend
    if tiling.encoder:
        tiles = split_tiles(*tiling.image, t.vae_encoder_tile, ENCODER_PAD, f, upscales=False)
        stages.append(_tiled_peak(tiles, encoder_segments, latent_pixels))
    if tiling.decoder:
        tiles = split_tiles(*tiling.latent, t.vae_decoder_tile, DECODER_PAD, f, upscales=True)
        stages.append(_tiled_peak(tiles, decoder_segments, image_pixels))
    return max(stages)


def one_step_cost(tiling: Tiling, encoder_segments: list[VAESegment], decoder_segments: list[VAESegment],
                  latent_channels: int, color_fix: bool) -> ImageCost:
    image_pixels = tiling.image[0] * tiling.image[1]
    stages = staged_peak(tiling, encoder_segments, decoder_segments, latent_channels)
    # The colour fix runs after the stages have let go of their buffers.
    memory = max(BYTES_PER_PIXEL[color_fix] * image_pixels, HELD_PER_PIXEL * image_pixels + stages)
    return ImageCost(memory, tiling.unet_tiles)
