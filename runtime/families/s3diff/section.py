"""S3Diff's section of the manifest: the constants the export side derived from the loaded checkpoints
and configs (the one-step DDPM coefficients, guidance, latent scale, prompt shapes) and the layout of
the VAE segments the official tiled VAE runs between its group norms."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from ...manifest import PipelineInfo

SCALE = 4  # the official inference: config sf 4 (bilinear x4 before the VAE)
# inference_s3diff.py reflect-pads the x4 image (bottom / right) to multiples of 64 px.
PAD_MULTIPLE = 64


class Resize(IntEnum):
    """How a VAE segment changes the spatial size: its downsampler (//2) or upsampler (x2), if any."""

    NONE = 0
    UP = 1
    DOWN = -1


@dataclass
class VAESegment:
    """What one segment of the tiled VAE computes: from a group norm (with statistics gathered over all
    tiles) to the input of the next one. Channel counts are fixed at export; spatial sizes are dynamic."""

    in_channels: int
    out_channels: int
    norm_groups: int | None  # the group norm it starts with (None: the first segment, which has none)
    next_groups: int | None  # groups of the norm its output feeds (None: the last segment)
    residual_in: int | None  # channels of the residual pending at its start (None: none)
    residual_out: int | None  # channels of the residual pending at its end, packed after ``out_channels``
    resize: Resize

    def out_size(self, size: int) -> int:
        if self.resize == Resize.UP:
            return 2 * size
        if self.resize == Resize.DOWN:  # diffusers' Downsample2D: pad (0, 1), 3x3 conv at stride 2
            return size // 2
        return size

    def problem(self) -> str | None:
        counts = (self.in_channels, self.out_channels, self.norm_groups or 1, self.next_groups or 1,
                  self.residual_in or 1, self.residual_out or 1)
        if min(counts) < 1:
            return f"VAE segment {self} has a non-positive channel or group count"
        return None


@dataclass
class S3DiffSection:
    latent_channels: int
    latent_scale: float  # the VAE's scaling_factor
    vae_factor: int  # image px per latent px
    timestep: int  # the UNet's only timestep (the official 999)
    guidance_scale: float  # eps = eps_neg + g * (eps_pos - eps_neg) (the official 1.07)
    # The one-step DDPM x0 of SD-Turbo's scheduler config at the timestep: (z - sqrt_beta * eps) / sqrt_alpha.
    sqrt_alpha_prod: float
    sqrt_beta_prod: float
    clip_sample_range: float | None  # x0 is clamped to +-range when the config asks for clip_sample
    lora_rank_unet: int
    lora_rank_vae: int
    positive_prompt: str
    negative_prompt: str
    embed_shape: list[int]  # (2, tokens, width) of prompt_embeds.npy: positive, negative
    encoder_segments: list[VAESegment]
    decoder_segments: list[VAESegment]

    def problem(self, pipeline: PipelineInfo) -> str | None:
        if pipeline.scale != SCALE:
            return f"scale {pipeline.scale}: S3Diff bundles are x{SCALE}"
        if self.latent_channels < 1 or self.vae_factor < 1 or PAD_MULTIPLE % self.vae_factor:
            return f"latent channels {self.latent_channels} and VAE factor {self.vae_factor} do not fit"
        if not self.sqrt_alpha_prod > 0:
            return f"sqrt_alpha_prod {self.sqrt_alpha_prod} must be positive"
        if len(self.embed_shape) != 3 or self.embed_shape[0] != 2:
            return f"embed_shape {self.embed_shape} is not (2, tokens, width)"
        for name, segments in (("encoder", self.encoder_segments), ("decoder", self.decoder_segments)):
            if len(segments) < 2 or segments[0].norm_groups is not None or segments[-1].next_groups is not None:
                return f"the {name} segments do not start without a norm and end without statistics"
            if problem := next((p for s in segments if (p := s.problem())), None):
                return problem
        return None
