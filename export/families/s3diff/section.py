"""The manifest section of an S3Diff build, from the loaded components."""

from __future__ import annotations

from sr_runtime.families.s3diff.section import S3DiffSection

from ...sd.vae_segments import VAESegments
from .components import GUIDANCE_SCALE, NEGATIVE_PROMPT, POSITIVE_PROMPT, S3DiffComponents


def build_section(c: S3DiffComponents, encoder: VAESegments, decoder: VAESegments,
                  embed_shape: tuple[int, ...]) -> S3DiffSection:
    step = c.one_step
    return S3DiffSection(
        latent_channels=c.latent_channels,
        latent_scale=c.latent_scale,
        vae_factor=c.vae_factor,
        timestep=step.timestep,
        guidance_scale=GUIDANCE_SCALE,
        sqrt_alpha_prod=step.sqrt_alpha_prod,
        sqrt_beta_prod=step.sqrt_beta_prod,
        clip_sample_range=step.clip_sample_range,
        lora_rank_unet=c.checkpoint.rank_unet,
        lora_rank_vae=c.checkpoint.rank_vae,
        positive_prompt=POSITIVE_PROMPT,
        negative_prompt=NEGATIVE_PROMPT,
        embed_shape=list(embed_shape),
        encoder_segments=encoder.records,
        decoder_segments=decoder.records,
    )
