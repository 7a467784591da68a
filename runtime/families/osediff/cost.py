"""What upscaling an image with OSEDiff costs on the host, known before it starts (``sd.one_step_cost``)."""

from __future__ import annotations

from ...resources import ImageCost
from ...sd.one_step_cost import one_step_cost
from .image_loop import tiling
from .options import OSEDiffOptions
from .section import OSEDiffSection


def image_cost(height: int, width: int, section: OSEDiffSection, options: OSEDiffOptions) -> ImageCost:
    return one_step_cost(tiling(height, width, section, options), section.encoder_segments, section.decoder_segments,
                         section.latent_channels, options.method is not None)
