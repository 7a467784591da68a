"""S3Diff's engine calls, one chain per stage (``ChainId``s named for what they run), with the prompt embeddings
from the bundle.

The backends key a chain's plan on the shape of its main feed (``ChainId.main_feed``): the LR image (the whole chain,
the degradation scores), the padded x4 image (the encoder), a latent tile (the UNet, the decoder) or a VAE tile (a
segment), and the plan's sizes follow from it. Every host feed is named for what it is: the graphs' own input names.
"""

from __future__ import annotations

import numpy as np

from ...backends.base import LR_FEED, ChainId, ChainPlan
from ...sd.one_step import DECODE, DENOISE, ENCODE
from ...sd.vae_graphs import SegmentChains
from .graphs import DEG_SCORE, DEGRADATION, UNET, VAE_DECODER, VAE_ENCODER, dims
from .section import S3DiffSection

WHOLE = ChainId("whole")  # an image that needs no tiling: degradation -> encoder -> UNet -> decoder in one chain
DEGRADE = ChainId("degrade")  # the LR image -> its deg_score
# The fixed chains; the VAE segments' follow them (``segment_chains``).
STAGES = (WHOLE, DEGRADE, ENCODE, DENOISE, DECODE)

# The whole chain's host data, in the order Upscaler.run_tiles takes it: the LR image, the padded x4 image in
# [-1, 1], the posterior noise.
FEEDS = (LR_FEED, "image", "noise")


def segment_chains(section: S3DiffSection) -> SegmentChains:
    return SegmentChains("S3Diff", STAGES, section.encoder_segments, section.decoder_segments, (DEG_SCORE,))


def s3diff_plan(section: S3DiffSection, prompt_embeds: np.ndarray, chain: ChainId, batch: int, height: int,
                width: int) -> ChainPlan:
    """The calls of one chain for a ``batch`` of main inputs of ``height`` x ``width`` px."""
    constants = {"prompt_embeds": prompt_embeds}
    f = section.vae_factor
    if chain == WHOLE:
        return ChainPlan(batch, (DEGRADATION.call(), VAE_ENCODER.call(), UNET.call(), VAE_DECODER.call()), constants,
                         FEEDS, "sr", dims(batch, height, width, section, prompt_embeds.shape))
    if chain == DEGRADE:
        return ChainPlan(batch, (DEGRADATION.call(),), {}, (LR_FEED,), "deg_score",
                         {"batch": batch, "lr_height": height, "lr_width": width})
    sizes = {"batch": batch, "latent_channels": section.latent_channels, "tokens": prompt_embeds.shape[1],
             "embed": prompt_embeds.shape[2]}
    if chain == ENCODE:
        sizes.update(height=height, width=width, latent_height=height // f, latent_width=width // f)
        return ChainPlan(batch, (VAE_ENCODER.call(),), {}, ("image", "deg_score", "noise"), "latent", sizes)
    if chain in (DENOISE, DECODE):
        sizes.update(latent_height=height, latent_width=width, height=height * f, width=width * f)
        if chain == DENOISE:
            return ChainPlan(batch, (UNET.call(),), constants, ("latent", "deg_score"), "eps", sizes)
        return ChainPlan(batch, (VAE_DECODER.call(),), {}, ("latent", "eps"), "sr", sizes)
    return segment_chains(section).plan(chain, batch, height, width)
