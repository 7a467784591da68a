"""S3Diff's section of the manifest: the constants the export side derived from the loaded checkpoints
and configs (the one-step DDPM coefficients, guidance, latent scale, prompt shapes) and the layout of
the VAE segments the official tiled VAE runs between its group norms."""

from __future__ import annotations

from dataclasses import dataclass

from ...manifest import PipelineInfo
from ...sd.vae_segment import VAESegment, segments_problem

SCALE = 4  # the official inference: config sf 4 (bilinear x4 before the VAE)
# inference_s3diff.py reflect-pads the x4 image (bottom / right) to multiples of 64 px.
PAD_MULTIPLE = 64


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
        return segments_problem(self.encoder_segments, self.decoder_segments)
