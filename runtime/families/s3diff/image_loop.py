"""The image-level loop of S3Diff (``inference_s3diff.py`` + ``S3Diff.forward``), shared by the PyTorch reference
and the engine runtime; only the networks differ (``S3DiffStages``).

LR -> bilinear x4 -> [-1, 1], reflect-padded to 64 -> degradation scores (on the LR) -> VAE encoder (tiled
above the encoder tile) -> posterior -> guided UNet noise prediction (latent tiles above the latent tile)
-> one-step x0 -> VAE decoder (tiled above the decoder tile) -> crop -> wavelet colour fix on 8-bit images.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np

from ...family import TileProgress
from ...sd import latent_tiles
from ...sd.posterior import posterior_noise, posterior_sample
from ...sd.tiled_vae import DECODER_PAD, ENCODER_PAD, run_tiled, split_tiles, tiled
from ...tiling import check_rgb_image
from .options import S3DiffOptions
from .preprocess import (
    SCALE,
    bilinear_upscale,
    check_size,
    finish,
    padded_size,
    vae_input,
)
from .section import S3DiffSection


class S3DiffStages(Protocol):
    """The networks, as whole-image calls (``whole``: everything of an image that needs no tiling)."""

    def whole(self, lr: np.ndarray, image: np.ndarray, noise: np.ndarray) -> np.ndarray: ...

    def degrade(self, lr: np.ndarray) -> np.ndarray: ...

    def encode(self, image: np.ndarray, deg_score: np.ndarray, noise: np.ndarray) -> np.ndarray: ...

    def denoise(self, latents: np.ndarray, deg_score: np.ndarray) -> np.ndarray:
        """Guided noise predictions of latents (n, C, h, w) of one image (``deg_score`` (1, 2))."""

    def decode(self, latent: np.ndarray, eps: np.ndarray) -> np.ndarray: ...

    def segment(self, kind: str, index: int, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """VAE segment ``index`` of the "encoder" or "decoder" on one tile: its graph's inputs -> its packed output."""


class Tiling:
    """Which of the three official tilings an image needs, and its sizes."""

    def __init__(self, lr_height: int, lr_width: int, section: S3DiffSection, options: S3DiffOptions):
        check_size(lr_height, lr_width)
        self.options = options.tiles
        self.height, self.width = SCALE * lr_height, SCALE * lr_width
        self.padded = (padded_size(lr_height), padded_size(lr_width))
        f = section.vae_factor
        self.latent = (self.padded[0] // f, self.padded[1] // f)
        self.encoder = tiled(*self.padded, self.options.vae_encoder_tile, ENCODER_PAD)
        self.unet = latent_tiles.tiled(*self.latent, self.options.latent_tile)
        self.decoder = tiled(*self.latent, self.options.vae_decoder_tile, DECODER_PAD)
        if self.unet:  # refuses an overlap the tiles cannot take before anything runs
            latent_tiles.tile_origins(*self.latent, self.options.latent_tile, self.options.latent_overlap)

    @property
    def any(self) -> bool:
        return self.encoder or self.unet or self.decoder

    @property
    def unet_tiles(self) -> int:
        if not self.unet:
            return 1
        t = self.options
        return len(latent_tiles.tile_origins(*self.latent, t.latent_tile, t.latent_overlap)[1])


def upscale_image(image: np.ndarray, stages: S3DiffStages, section: S3DiffSection, options: S3DiffOptions,
                  batch: int, on_tiles_done: TileProgress | None = None) -> np.ndarray:
    """``image`` (H, W, 3) float32 in [0, 1] -> (4H, 4W, 3) float32 in [0, 1]; ``batch`` latent tiles per UNet call."""
    check_rgb_image(image)
    tiling = Tiling(image.shape[0], image.shape[1], section, options)
    lr = np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)
    upscaled = bilinear_upscale(lr[0])
    padded = vae_input(upscaled)
    noise = posterior_noise(options.seed, (1, section.latent_channels, *tiling.latent))
    if not tiling.any:
        sr = stages.whole(lr, padded, noise)
    else:
        sr = _staged(lr, padded, noise, stages, section, tiling, batch)
    if on_tiles_done is not None:
        on_tiles_done(tiling.unet_tiles, tiling.unet_tiles)
    return finish(sr[0, :, :tiling.height, :tiling.width], upscaled, options.wavelet)


def _staged(lr, padded, noise, stages: S3DiffStages, section: S3DiffSection, tiling: Tiling, batch: int) -> np.ndarray:
    deg_score = stages.degrade(lr)
    f, t = section.vae_factor, tiling.options
    if tiling.encoder:
        tiles = split_tiles(*tiling.padded, t.vae_encoder_tile, ENCODER_PAD, f, upscales=False)
        moments = run_tiled({"x": padded}, section.encoder_segments,
                            lambda i, inputs: stages.segment("encoder", i, {**inputs, "deg_score": deg_score}),
                            tiles, tiling.latent)
        latent = posterior_sample(moments, noise, section.latent_scale)
    else:
        latent = stages.encode(padded, deg_score, noise)
    if tiling.unet:
        eps = latent_tiles.denoise_tiled(latent, lambda tiles: stages.denoise(tiles, deg_score), t.latent_tile,
                                         t.latent_overlap, batch)
    else:
        eps = stages.denoise(latent, deg_score)
    if not tiling.decoder:
        return stages.decode(latent, eps)
    tiles = split_tiles(*tiling.latent, t.vae_decoder_tile, DECODER_PAD, f, upscales=True)
    return run_tiled({"x": latent, "eps": eps}, section.decoder_segments,
                     lambda i, inputs: stages.segment("decoder", i, inputs), tiles, tiling.padded)
