"""The image loop the one-step SD families share (S3Diff's ``S3Diff.forward``, OSEDiff's ``OSEDiff_test.forward``):
the VAE encoder (the official tiled VAE above its encoder tile) -> the posterior sample -> the UNet's noise
prediction (the official latent tiles above the latent tile) -> the one-step x0 and the VAE decoder (tiled above
its decoder tile). A family's stages carry its own conditioning (S3Diff's deg_score, OSEDiff's prompt)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..backends.base import ChainId, TileChain
from ..checks import require_non_negative_int, require_positive_int
from ..errors import SRError
from . import latent_tiles
from .posterior import posterior_sample
from .tiled_vae import DECODER_PAD, ENCODER_PAD, run_tiled, split_tiles, tiled
from .vae_graphs import DECODER, ENCODER, segment_chain
from .vae_segment import VAESegment

# The official defaults: --latent_tiled_size / --latent_tiled_overlap (latent px), --vae_encoder_tiled_size
# (image px) and --vae_decoder_tiled_size (latent px).
LATENT_TILE = 96
LATENT_OVERLAP = 32
VAE_ENCODER_TILE = 1024
VAE_DECODER_TILE = 224

# The chains of the stages every one-step family has (a family's own, and its conditioning, in its chain.py), each
# fed its graph's inputs under their own names: the encoder the VAE input, the UNet and the decoder a latent.
ENCODE = ChainId("encode", main_feed="image")
DENOISE = ChainId("denoise", main_feed="latent")
DECODE = ChainId("decode", main_feed="latent")


@dataclass(frozen=True)
class TileSizes:
    latent_tile: int  # latent px
    latent_overlap: int
    vae_encoder_tile: int  # image px
    vae_decoder_tile: int  # latent px


@dataclass(frozen=True)
class OneStepTiles:
    """The tile options of a one-step family's per-image options (None: the official default)."""

    latent_tile: int | None = None
    latent_overlap: int | None = None
    vae_encoder_tile: int | None = None
    vae_decoder_tile: int | None = None

    def check_tiles(self) -> None:
        for name in ("latent_tile", "vae_encoder_tile", "vae_decoder_tile"):
            require_positive_int(name.replace("_", " "), getattr(self, name), optional=True)
        require_non_negative_int("latent overlap", self.latent_overlap, optional=True)
        if self.tiles.latent_overlap >= self.tiles.latent_tile:
            raise SRError(f"latent overlap {self.tiles.latent_overlap} must be below the latent tile "
                          f"{self.tiles.latent_tile} (the official tile grid would never end)")

    def check_vae(self, vae_factor: int) -> None:
        """Refuses encoder tiles the VAE cannot downsample evenly: their latents would not meet (found only once
        every tile had run its encoder)."""
        if self.tiles.vae_encoder_tile % vae_factor:
            raise SRError(f"VAE encoder tile {self.tiles.vae_encoder_tile} must be a multiple of the VAE's factor "
                          f"{vae_factor} (the official default is {VAE_ENCODER_TILE})")

    @property
    def tiles(self) -> TileSizes:
        return TileSizes(
            self.latent_tile or LATENT_TILE,
            LATENT_OVERLAP if self.latent_overlap is None else self.latent_overlap,
            self.vae_encoder_tile or VAE_ENCODER_TILE,
            self.vae_decoder_tile or VAE_DECODER_TILE,
        )


class Tiling:
    """Which of the three official tilings a VAE input of ``height`` x ``width`` px needs."""

    def __init__(self, height: int, width: int, vae_factor: int, tiles: TileSizes):
        self.options = tiles
        self.vae_factor = vae_factor
        self.image = (height, width)
        self.latent = (height // vae_factor, width // vae_factor)
        self.encoder = tiled(height, width, tiles.vae_encoder_tile, ENCODER_PAD)
        self.unet = latent_tiles.tiled(*self.latent, tiles.latent_tile)
        self.decoder = tiled(*self.latent, tiles.vae_decoder_tile, DECODER_PAD)
        if self.unet:  # refuses an overlap the tiles cannot take before anything runs
            latent_tiles.tile_origins(*self.latent, tiles.latent_tile, tiles.latent_overlap)

    @property
    def any(self) -> bool:
        return self.encoder or self.unet or self.decoder

    @property
    def unet_tiles(self) -> int:
        if not self.unet:
            return 1
        t = self.options
        return len(latent_tiles.tile_origins(*self.latent, t.latent_tile, t.latent_overlap)[1])


class OneStepStages(Protocol):
    """A family's networks on one image, its conditioning bound."""

    def encode(self, image: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """The VAE input (1, 3, H, W) in [-1, 1], the posterior noise -> the scaled latent."""

    def denoise(self, latents: np.ndarray) -> np.ndarray:
        """Noise predictions of latents (n, C, h, w) of the image."""

    def decode(self, latent: np.ndarray, eps: np.ndarray) -> np.ndarray:
        """Latent and eps -> the image in [0, 1]."""

    def segment(self, kind: str, index: int, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """VAE segment ``index`` of the ENCODER or DECODER on one tile: its graph's inputs -> its packed output."""


@dataclass(frozen=True)
class SegmentedVAE:
    """What the tiled stages need of the bundle's VAE."""

    encoder_segments: list[VAESegment]
    decoder_segments: list[VAESegment]
    latent_scale: float


def run_staged(image: np.ndarray, noise: np.ndarray, stages: OneStepStages, vae: SegmentedVAE, tiling: Tiling,
               batch: int) -> np.ndarray:
    """The image's stages one by one, each tiled where ``tiling`` says; ``batch`` latent tiles per UNet call."""
    f, t = tiling.vae_factor, tiling.options
    if tiling.encoder:
        tiles = split_tiles(*tiling.image, t.vae_encoder_tile, ENCODER_PAD, f, upscales=False)
        moments = run_tiled({"x": image}, vae.encoder_segments, lambda i, inputs: stages.segment(ENCODER, i, inputs),
                            tiles, tiling.latent)
        latent = posterior_sample(moments, noise, vae.latent_scale)
    else:
        latent = stages.encode(image, noise)
    if tiling.unet:
        eps = latent_tiles.denoise_tiled(latent, stages.denoise, t.latent_tile, t.latent_overlap, batch)
    else:
        eps = stages.denoise(latent)
    if not tiling.decoder:
        return stages.decode(latent, eps)
    tiles = split_tiles(*tiling.latent, t.vae_decoder_tile, DECODER_PAD, f, upscales=True)
    return run_tiled({"x": latent, "eps": eps}, vae.decoder_segments,
                     lambda i, inputs: stages.segment(DECODER, i, inputs), tiles, tiling.image)


class ChainCalls:
    """A one-step family's stages as calls of its bundle's chains: the decoder and the tiled VAE's segments here,
    the family's own stages in its subclass."""

    def __init__(self, chain: TileChain):
        self.chain = chain

    def _run(self, chain: ChainId, **feeds: np.ndarray) -> np.ndarray:
        return np.asarray(self.chain(feeds, chain), dtype=np.float32)

    def decode(self, latent: np.ndarray, eps: np.ndarray) -> np.ndarray:
        return self._run(DECODE, latent=latent, eps=eps)

    def segment(self, kind: str, index: int, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        return self._run(segment_chain(kind, index), **inputs)
