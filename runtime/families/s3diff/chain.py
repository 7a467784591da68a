"""S3Diff's engine calls, one chain per stage (the family's variants), with the prompt embeddings from the bundle.

The backends key a chain's plan on the shape of the buffer named ``lr``: each chain puts its main input
there (the LR image, the padded x4 image, a latent tile or a VAE tile), and the plan's sizes follow from it.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from ...backends.base import LR_FEED, ChainPlan
from ...sd.vae_graphs import SegmentChains
from .graphs import DEG_SCORE, DEGRADATION, UNET, VAE_DECODER, VAE_ENCODER, dims
from .section import S3DiffSection


class Stage(IntEnum):
    """The fixed chains; the VAE segments follow them (``segment_chains``)."""

    WHOLE = 0  # an image that needs no tiling: degradation -> encoder -> UNet -> decoder in one chain
    DEGRADE = 1
    ENCODE = 2
    DENOISE = 3
    DECODE = 4


# The whole chain's host data, in the order Upscaler.run_tiles takes it: the LR image, the padded x4 image in
# [-1, 1], the posterior noise.
FEEDS = (LR_FEED, "image", "noise")


def segment_chains(section: S3DiffSection) -> SegmentChains:
    return SegmentChains(len(Stage), section.encoder_segments, section.decoder_segments, (DEG_SCORE,))


def s3diff_plan(section: S3DiffSection, prompt_embeds: np.ndarray, variant: int, batch: int, height: int,
                width: int) -> ChainPlan:
    """The calls of one chain for a ``batch`` of main inputs of ``height`` x ``width`` px."""
    constants = {"prompt_embeds": prompt_embeds}
    f = section.vae_factor
    if variant == Stage.WHOLE:
        return ChainPlan(batch, (DEGRADATION.call(), VAE_ENCODER.call(), UNET.call(), VAE_DECODER.call()), constants,
                         FEEDS, "sr", dims(batch, height, width, section, prompt_embeds.shape))
    if variant == Stage.DEGRADE:
        return ChainPlan(batch, (DEGRADATION.call(),), {}, (LR_FEED,), "deg_score",
                         {"batch": batch, "lr_height": height, "lr_width": width})
    sizes = {"batch": batch, "latent_channels": section.latent_channels, "tokens": prompt_embeds.shape[1],
             "embed": prompt_embeds.shape[2]}
    if variant == Stage.ENCODE:
        sizes.update(height=height, width=width, latent_height=height // f, latent_width=width // f)
        return ChainPlan(batch, (VAE_ENCODER.call(image=LR_FEED),), {}, (LR_FEED, "deg_score", "noise"), "latent",
                         sizes)
    if variant in (Stage.DENOISE, Stage.DECODE):
        sizes.update(latent_height=height, latent_width=width, height=height * f, width=width * f)
        if variant == Stage.DENOISE:
            return ChainPlan(batch, (UNET.call(latent=LR_FEED),), constants, (LR_FEED, "deg_score"), "eps", sizes)
        return ChainPlan(batch, (VAE_DECODER.call(latent=LR_FEED),), {}, (LR_FEED, "eps"), "sr", sizes)
    return segment_chains(section).plan(variant, batch, height, width)
