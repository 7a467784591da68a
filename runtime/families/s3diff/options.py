"""S3Diff's per-image options (``Upscaler.upscale`` keywords) and how their defaults resolve to the official
command line's (``src/my_utils/testing_utils.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from ...color import NO_COLOR_FIX, color_fix_method
from ...errors import SRError

MAX_SEED = 2**63 - 1
# The official defaults: --latent_tiled_size / --latent_tiled_overlap (latent px), --vae_encoder_tiled_size
# (image px) and --vae_decoder_tiled_size (latent px), --align_method.
LATENT_TILE = 96
LATENT_OVERLAP = 32
VAE_ENCODER_TILE = 1024
VAE_DECODER_TILE = 224
WAVELET = "wavelet"  # the only colour fix of the official --align_method that sr-export has (adain is not)


def _positive(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise SRError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class S3DiffOptions:
    color_fix: str | None = None  # "wavelet" (the default, as the official --align_method) or "none"
    seed: int | None = None  # draw the VAE posterior sample with numpy; None: the posterior mean
    latent_tile: int | None = None
    latent_overlap: int | None = None
    vae_encoder_tile: int | None = None
    vae_decoder_tile: int | None = None

    def __post_init__(self):
        if color_fix_method(self.color_fix) not in (None, WAVELET):
            raise SRError(f"colour fix {self.color_fix!r}: S3Diff's official --align_method has wavelet (the default), "
                          f"adain (not in sr-export) and nofix ({NO_COLOR_FIX!r} here)")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)
                                      or not 0 <= self.seed <= MAX_SEED):
            raise SRError(f"seed {self.seed!r} must be an integer from 0 to {MAX_SEED}")
        for name in ("latent_tile", "vae_encoder_tile", "vae_decoder_tile"):
            _positive(name.replace("_", " "), getattr(self, name))
        if self.latent_overlap is not None and (isinstance(self.latent_overlap, bool)
                                                or not isinstance(self.latent_overlap, int) or self.latent_overlap < 0):
            raise SRError(f"latent overlap must be a non-negative integer, got {self.latent_overlap!r}")
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
    def wavelet(self) -> bool:
        """Whether the wavelet colour fix runs: unless "none" is asked for."""
        return self.color_fix != NO_COLOR_FIX

    @property
    def tiles(self) -> TileSizes:
        return TileSizes(
            self.latent_tile or LATENT_TILE,
            LATENT_OVERLAP if self.latent_overlap is None else self.latent_overlap,
            self.vae_encoder_tile or VAE_ENCODER_TILE,
            self.vae_decoder_tile or VAE_DECODER_TILE,
        )


@dataclass(frozen=True)
class TileSizes:
    latent_tile: int  # latent px
    latent_overlap: int
    vae_encoder_tile: int  # image px
    vae_decoder_tile: int  # latent px
