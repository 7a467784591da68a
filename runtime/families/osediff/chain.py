"""OSEDiff's engine calls, one chain per stage (the family's variants): the tagger and the text encoder run per
image between host steps (the tags become the prompt on the host), then the VAE and UNet chains.

The backends key a chain's plan on the shape of the buffer named ``lr``: each chain puts its main input there
(the tagger's image, the token ids, the x4 image, a latent tile or a VAE tile), and the plan's sizes follow from it.
"""

from __future__ import annotations

from enum import IntEnum

from ...backends.base import LR_FEED, ChainPlan
from ...sd.vae_graphs import SegmentChains
from .graphs import TAGGER, TEXT_ENCODER, UNET, VAE_DECODER, VAE_ENCODER
from .section import OSEDiffSection


class Stage(IntEnum):
    """The fixed chains; the VAE segments follow them (``segment_chains``)."""

    TAG = 0
    EMBED = 1
    BODY = 2  # an image that needs no tiling: encoder -> UNet -> decoder in one chain
    ENCODE = 3
    DENOISE = 4
    DECODE = 5


# The body chain's host data, in the order Upscaler.run_tiles takes it: the x4 image in [-1, 1], the posterior
# noise, the prompt embeddings.
FEEDS = (LR_FEED, "noise", "prompt_embeds")


def segment_chains(section: OSEDiffSection) -> SegmentChains:
    return SegmentChains(len(Stage), section.encoder_segments, section.decoder_segments)


def osediff_plan(section: OSEDiffSection, variant: int, batch: int, height: int, width: int) -> ChainPlan:
    """The calls of one chain for a ``batch`` of main inputs of ``height`` x ``width`` (``lr`` buffer)."""
    f = section.vae_factor
    sizes = {"batch": batch, "latent_channels": section.latent_channels, "tokens": section.tokens,
             "embed": section.embed, "classes": len(section.tags)}
    if variant == Stage.TAG:
        return ChainPlan(batch, (TAGGER.call(tagger_image=LR_FEED),), {}, (LR_FEED,), "tag_probabilities", sizes)
    if variant == Stage.EMBED:
        return ChainPlan(batch, (TEXT_ENCODER.call(input_ids=LR_FEED),), {}, (LR_FEED,), "prompt_embeds", sizes)
    if variant in (Stage.BODY, Stage.ENCODE):
        sizes.update(height=height, width=width, latent_height=height // f, latent_width=width // f)
        if variant == Stage.BODY:
            return ChainPlan(batch, (VAE_ENCODER.call(image=LR_FEED), UNET.call(), VAE_DECODER.call()), {}, FEEDS,
                             "sr", sizes)
        return ChainPlan(batch, (VAE_ENCODER.call(image=LR_FEED),), {}, (LR_FEED, "noise"), "latent", sizes)
    if variant in (Stage.DENOISE, Stage.DECODE):
        sizes.update(latent_height=height, latent_width=width, height=height * f, width=width * f)
        if variant == Stage.DENOISE:
            return ChainPlan(batch, (UNET.call(latent=LR_FEED),), {}, (LR_FEED, "prompt_embeds"), "eps", sizes)
        return ChainPlan(batch, (VAE_DECODER.call(latent=LR_FEED),), {}, (LR_FEED, "eps"), "sr", sizes)
    return segment_chains(section).plan(variant, batch, height, width)
