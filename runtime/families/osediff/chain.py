"""OSEDiff's engine calls, one chain per stage (``ChainId``s named for what they run): the tagger and the text encoder
run per image between host steps (the tags become the prompt on the host), then the VAE and UNet chains.

The backends key a chain's plan on the shape of its main feed (``ChainId.main_feed``): the tagger's image, the token
ids, the x4 image, a latent tile or a VAE tile, and the plan's sizes follow from it. Every host feed is named for what
it is: the graphs' own input names.
"""

from __future__ import annotations

from ...backends.base import ChainId, ChainPlan
from ...sd.one_step import DECODE, DENOISE, ENCODE
from ...sd.vae_graphs import SegmentChains
from .graphs import TAGGER, TEXT_ENCODER, UNET, VAE_DECODER, VAE_ENCODER
from .section import OSEDiffSection

TAG = ChainId("tag", main_feed="tagger_image")  # RAM's image -> its tag probabilities
EMBED = ChainId("embed", main_feed="input_ids")  # the prompt's token ids -> its embeddings
BODY = ChainId("body", main_feed="image")  # an image that needs no tiling: encoder -> UNet -> decoder in one chain
# The fixed chains; the VAE segments' follow them (``segment_chains``).
STAGES = (TAG, EMBED, BODY, ENCODE, DENOISE, DECODE)

# The body chain's host data, in the order Upscaler.run_tiles takes it: the x4 image in [-1, 1], the posterior
# noise, the prompt embeddings.
FEEDS = ("image", "noise", "prompt_embeds")


def segment_chains(section: OSEDiffSection) -> SegmentChains:
    return SegmentChains("OSEDiff", STAGES, section.encoder_segments, section.decoder_segments)


def osediff_plan(section: OSEDiffSection, chain: ChainId, batch: int, height: int, width: int) -> ChainPlan:
    """The calls of one chain for a ``batch`` of main inputs of ``height`` x ``width`` (its main feed)."""
    f = section.vae_factor
    sizes = {"batch": batch, "latent_channels": section.latent_channels, "tokens": section.tokens,
             "embed": section.embed, "classes": len(section.tags)}
    if chain == TAG:
        return ChainPlan(batch, (TAGGER.call(),), {}, ("tagger_image",), "tag_probabilities", sizes)
    if chain == EMBED:
        return ChainPlan(batch, (TEXT_ENCODER.call(),), {}, ("input_ids",), "prompt_embeds", sizes)
    if chain in (BODY, ENCODE):
        sizes.update(height=height, width=width, latent_height=height // f, latent_width=width // f)
        if chain == BODY:
            return ChainPlan(batch, (VAE_ENCODER.call(), UNET.call(), VAE_DECODER.call()), {}, FEEDS, "sr", sizes)
        return ChainPlan(batch, (VAE_ENCODER.call(),), {}, ("image", "noise"), "latent", sizes)
    if chain in (DENOISE, DECODE):
        sizes.update(latent_height=height, latent_width=width, height=height * f, width=width * f)
        if chain == DENOISE:
            return ChainPlan(batch, (UNET.call(),), {}, ("latent", "prompt_embeds"), "eps", sizes)
        return ChainPlan(batch, (VAE_DECODER.call(),), {}, ("latent", "eps"), "sr", sizes)
    return segment_chains(section).plan(chain, batch, height, width)
