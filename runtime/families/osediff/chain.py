"""OSEDiff's engine calls, one chain per stage (the family's variants): the tagger and the text encoder run per
image between host steps (the tags become the prompt on the host), then the VAE and UNet chains.

The backends key a chain's plan on the shape of the buffer named ``lr``: each chain puts its main input there
(the tagger's image, the token ids, the x4 image, a latent tile or a VAE tile), and the plan's sizes follow from it.
"""

from __future__ import annotations

from enum import IntEnum

from ...backends.base import LR_FEED, ChainPlan
from ...errors import SRError
from ...sd.vae_graphs import DECODER, ENCODER, segment_dims, segment_io
from .graphs import TAGGER, TEXT_ENCODER, UNET, VAE_DECODER, VAE_ENCODER
from .section import OSEDiffSection


class Stage(IntEnum):
    """The fixed chains; the VAE segments follow them (``segment_variant``)."""

    TAG = 0
    EMBED = 1
    BODY = 2  # an image that needs no tiling: encoder -> UNet -> decoder in one chain
    ENCODE = 3
    DENOISE = 4
    DECODE = 5


# The body chain's host data, in the order Upscaler.run_tiles takes it: the x4 image in [-1, 1], the posterior
# noise, the prompt embeddings.
FEEDS = (LR_FEED, "noise", "prompt_embeds")


def segment_variant(section: OSEDiffSection, kind: str, index: int) -> int:
    return len(Stage) + index + (len(section.encoder_segments) if kind == DECODER else 0)


def _segment(section: OSEDiffSection, variant: int) -> tuple[str, int]:
    index = variant - len(Stage)
    encoders = len(section.encoder_segments)
    if 0 <= index < encoders:
        return ENCODER, index
    if 0 <= index - encoders < len(section.decoder_segments):
        return DECODER, index - encoders
    raise SRError(f"an OSEDiff bundle has no chain {variant}")


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
    kind, index = _segment(section, variant)
    segment = (section.encoder_segments if kind == ENCODER else section.decoder_segments)[index]
    io = segment_io(kind, index, segment)
    sizes = {"batch": batch, **dict(zip(segment_dims(kind, index),
                                        (height, width, segment.out_size(height), segment.out_size(width)), strict=True))}
    feeds = tuple(LR_FEED if t.name == "x" else t.name for t in io.inputs)
    return ChainPlan(batch, (io.call(x=LR_FEED),), {}, feeds, "y", sizes)


