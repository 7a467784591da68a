"""InvSR's section of the manifest: the constants the export side decided from the loaded configs."""

from __future__ import annotations

from dataclasses import dataclass

from ...checks import is_int
from ...errors import SRError
from ...manifest import PipelineInfo

SCALE = 4  # the noise predictor works at LR / 2, which is the latent size only for x4
MAX_TILE = 256  # above this the official sampler switches to a tiled VAE, which we do not reproduce


@dataclass
class Geometry:
    """How LR pixels map to latents, derived from the VAE's and UNet's configs as the official sampler
    does (``sampler_invsr.sample_func``)."""

    latent_channels: int
    vae_factor: int  # image px per latent px: 2 ** (VAE levels - 1)
    # mod_lq = vae_factor // SCALE * 2 ** (UNet levels - 1): LR sides are reflect-padded to multiples of it,
    # so every UNet level downsamples evenly.
    pad_multiple: int

    @classmethod
    def from_configs(cls, latent_channels: int, vae_levels: int, unet_levels: int) -> Geometry:
        vae_factor = 2 ** (vae_levels - 1)
        return cls(latent_channels, vae_factor, vae_factor // SCALE * 2 ** (unet_levels - 1))

    def latent_side(self, tile: int) -> int:
        return tile * SCALE // self.vae_factor

    def latent_shape(self, batch: int, tile: int) -> tuple[int, int, int, int]:
        side = self.latent_side(tile)
        return (batch, self.latent_channels, side, side)

    def problem(self) -> str | None:
        if self.latent_channels < 1 or self.vae_factor < SCALE or self.pad_multiple < 1:
            return (f"latent channels {self.latent_channels}, VAE factor {self.vae_factor} and pad multiple "
                    f"{self.pad_multiple}: a x{SCALE} InvSR needs a VAE that downsamples by at least {SCALE}")
        return None


def check_tile_size(tile: int) -> None:
    """What can be checked before the configs are known."""
    if not is_int(tile, 1):
        raise SRError(f"tile {tile!r} must be a positive integer (the official size is 128)")
    if tile > MAX_TILE:
        raise SRError(
            f"tile {tile} is above {MAX_TILE}: the official sampler tiles its VAE there, which is not reproduced"
        )


def check_tile(tile: int, geometry: Geometry) -> None:
    check_tile_size(tile)
    if tile % geometry.pad_multiple:
        raise SRError(
            f"tile {tile} must be a multiple of {geometry.pad_multiple} (the VAE's {geometry.vae_factor} px per latent "
            f"px over the x{SCALE}, times the UNet's downsampling); the official size is 128"
        )


@dataclass
class StepGroup:
    """One sampling schedule: what a tile of this group runs."""

    cli_timesteps: list[int]  # T_i as the user gave them
    timesteps: list[float]  # t_i = T_i - 1, fed to the networks
    sigmas: list[float]  # N + 1 values, the last one is the final σ

    @property
    def steps(self) -> int:
        return len(self.timesteps)

    def problem(self) -> str | None:
        if self.steps < 1:
            return "a step group without timesteps"
        if len(self.sigmas) != self.steps + 1:
            return f"{self.steps} timesteps need {self.steps + 1} sigmas, a step group has {len(self.sigmas)}"
        return None


@dataclass
class InvSRSection:
    geometry: Geometry
    latent_scale: float  # the VAE's scaling_factor
    # The schedules this bundle runs, fewest steps first; the engines serve them all (timesteps and σ are inputs).
    groups: list[StepGroup]
    prompt: str
    embed_shape: list[int]  # (1, tokens, width) of prompt_embeds.npy

    @property
    def group_steps(self) -> list[int]:
        return [group.steps for group in self.groups]

    def problem(self, pipeline: PipelineInfo) -> str | None:
        if problem := self.geometry.problem():
            return problem
        try:
            check_tile(pipeline.tile, self.geometry)
        except SRError as err:
            return str(err)
        if not self.groups:
            return "no step groups"
        if problem := next((p for g in self.groups if (p := g.problem())), None):
            return problem
        if self.group_steps != sorted(set(self.group_steps)):
            return f"step groups of {self.group_steps} steps: each count once, fewest first"
        if len(self.embed_shape) != 3 or self.embed_shape[0] != 1:
            return f"embed_shape {self.embed_shape} is not (1, tokens, width)"
        return None
