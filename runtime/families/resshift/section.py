"""ResShift's section of the manifest: the sampling constants the export side computed from the loaded
config (the eta schedule, in the float32 values the official sampler's tensors hold)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...checks import is_int
from ...errors import SRError
from ...manifest import PipelineInfo
from .graphs import SCALE


def check_tile(tile: int) -> None:
    if not is_int(tile, 1):
        raise SRError(f"tile {tile!r} must be a positive integer (LR px: the default chop size, the largest patch)")


@dataclass
class SamplingStep:
    """One UNet call; the field names are the ``unet_step`` graph's scalar inputs."""

    timestep: float  # what the UNet embeds: the respaced step's index in the trained schedule
    input_divisor: float  # x_t is divided by it before the UNet (sqrt(kappa^2 eta_t + 1) for latents)
    coef_latent: float  # posterior mean = coef_latent * x_t + coef_x0 * x0
    coef_x0: float
    noise_std: float  # posterior std; 0 for the last call, whose noise draw is discarded


@dataclass
class ResShiftSection:
    model: str  # resshift-v3, resshift-v1, resshift-v2 or sinsr
    latent_channels: int
    pad_multiple: int  # each patch is reflect-padded bottom/right to multiples of it (LR px)
    prior_scale: float  # z_T = z_y + prior_scale * noise: kappa * sqrt(eta_T)
    steps: list[SamplingStep]  # in call order, t = T-1 down to 0 (SinSR: one call at T-1 returning x0)
    config: dict[str, Any]  # the official config's model / autoencoder / diffusion params, as built

    def max_patch(self, pipeline: PipelineInfo) -> int:
        """The largest padded patch side the engines take: the bundle's tile rounded up to the pad multiple."""
        return -(-pipeline.tile // self.pad_multiple) * self.pad_multiple

    def problem(self, pipeline: PipelineInfo) -> str | None:
        if pipeline.scale != SCALE:
            return f"scale {pipeline.scale}: ResShift bundles are x{SCALE}"
        if self.latent_channels < 1 or self.pad_multiple < 1:
            return f"latent_channels {self.latent_channels} and pad_multiple {self.pad_multiple} must be positive"
        if not self.steps:
            return "no sampling steps"
        if self.steps[-1].noise_std != 0:
            return "the last sampling step has noise; its draw is the discarded one (noise_std must be 0)"
        return None
