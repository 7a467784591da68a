"""What upscaling an image with S3Diff costs on the host, known before it starts.

The loop holds a few full-size float32 images (the bilinear x4 LR, the padded VAE input, the SR image and the
colour fix's intermediates: measured per pixel with tracemalloc), and, while a tiled VAE runs, every tile's
activation (and pending residual) at the current segment: all tiles wait for the gathered group statistics.
"""

from __future__ import annotations

from ...resources import ImageCost
from ...sd.tiled_vae import DECODER_PAD, ENCODER_PAD, VAETile, split_tiles
from ...sd.vae_segment import VAESegment
from .image_loop import Tiling
from .options import S3DiffOptions
from .section import S3DiffSection

# Host bytes per pixel of the padded x4 image at the untiled loop's peak (without and with the wavelet colour
# fix), and held while a tiled stage runs (the x4 LR and the padded VAE input).
BYTES_PER_PIXEL = {False: 60, True: 152}
HELD_PER_PIXEL = 28
FLOAT = 4


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


def image_cost(height: int, width: int, section: S3DiffSection, options: S3DiffOptions) -> ImageCost:
    tiling = Tiling(height, width, section, options)
    t = tiling.options
    image_pixels = tiling.padded[0] * tiling.padded[1]
    latent_pixels = tiling.latent[0] * tiling.latent[1]
    stages = [2 * (section.latent_channels + 1) * latent_pixels * 8]  # the latent tiles' float64 blend
    if tiling.encoder:
        tiles = split_tiles(*tiling.padded, t.vae_encoder_tile, ENCODER_PAD, section.vae_factor, upscales=False)
        stages.append(_tiled_peak(tiles, section.encoder_segments, latent_pixels))
    if tiling.decoder:
        tiles = split_tiles(*tiling.latent, t.vae_decoder_tile, DECODER_PAD, section.vae_factor, upscales=True)
        stages.append(_tiled_peak(tiles, section.decoder_segments, image_pixels))
    # The colour fix runs after the stages have let go of their buffers.
    memory = max(BYTES_PER_PIXEL[options.wavelet] * image_pixels, HELD_PER_PIXEL * image_pixels + max(stages))
    return ImageCost(memory, tiling.unet_tiles)
