"""The manifest section of an OSEDiff build, from the loaded components."""

from __future__ import annotations

from sr_runtime.families.osediff.section import OSEDiffSection
from sr_runtime.sd.vae_graphs import DECODER, ENCODER

from .components import OSEDiffComponents
from .vae_segments import segments_of


def build_section(c: OSEDiffComponents) -> OSEDiffSection:
    step, text = c.one_step, c.sd.text_encoder.config
    return OSEDiffSection(
        latent_channels=c.latent_channels,
        latent_scale=c.latent_scale,
        vae_factor=c.vae_factor,
        timestep=step.timestep,
        sqrt_alpha_prod=step.sqrt_alpha_prod,
        sqrt_beta_prod=step.sqrt_beta_prod,
        clip_sample_range=step.clip_sample_range,
        lora_rank_unet=c.checkpoint.rank_unet,
        lora_rank_vae=c.checkpoint.rank_vae,
        tags=list(c.vocabulary.tags),
        thresholds=list(c.vocabulary.thresholds),
        tokens=int(c.sd.tokenizer.model_max_length),
        embed=int(text.hidden_size),
        encoder_segments=segments_of(c, ENCODER).records,
        decoder_segments=segments_of(c, DECODER).records,
    )
