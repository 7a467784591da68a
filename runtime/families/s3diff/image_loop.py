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

from ...checks import check_rgb_image
from ...family import TileProgress
from ...sd.finish import finish, to_bytes
from ...sd.one_step import SegmentedVAE, run_staged
from ...sd.one_step import Tiling as OneStepTiling
from ...sd.posterior import posterior_noise
from ...sd.vae_graphs import ENCODER
from .options import S3DiffOptions
from .preprocess import (
    SCALE,
    bilinear_upscale,
    check_size,
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


class Tiling(OneStepTiling):
    """Which of the three official tilings an image needs, and its sizes."""

    def __init__(self, lr_height: int, lr_width: int, section: S3DiffSection, options: S3DiffOptions):
        check_size(lr_height, lr_width)
        self.height, self.width = SCALE * lr_height, SCALE * lr_width
        self.padded = (padded_size(lr_height), padded_size(lr_width))
        super().__init__(*self.padded, section.vae_factor, options.tiles)


class _Conditioned:
    """The stages with the image's deg_score bound, as the shared loop calls them."""

    def __init__(self, stages: S3DiffStages, deg_score: np.ndarray):
        self.stages = stages
        self.deg_score = deg_score

    def encode(self, image: np.ndarray, noise: np.ndarray) -> np.ndarray:
        return self.stages.encode(image, self.deg_score, noise)

    def denoise(self, latents: np.ndarray) -> np.ndarray:
        return self.stages.denoise(latents, self.deg_score)

    def decode(self, latent: np.ndarray, eps: np.ndarray) -> np.ndarray:
        return self.stages.decode(latent, eps)

    def segment(self, kind: str, index: int, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.stages.segment(kind, index, {**inputs, "deg_score": self.deg_score} if kind == ENCODER else inputs)


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
        vae = SegmentedVAE(section.encoder_segments, section.decoder_segments, section.latent_scale)
        sr = run_staged(padded, noise, _Conditioned(stages, stages.degrade(lr)), vae, tiling, batch)
    if on_tiles_done is not None:
        on_tiles_done(tiling.unet_tiles, tiling.unet_tiles)
    reference = to_bytes(upscaled) if options.method else upscaled  # only a colour fix reads it as 8-bit
    return finish(sr[0, :, :tiling.height, :tiling.width], reference, options.method)
