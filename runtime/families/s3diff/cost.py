"""What upscaling an image with S3Diff costs on the host, known before it starts (``sd.one_step_cost``)."""

from __future__ import annotations

from ...resources import ImageCost
from ...sd.one_step_cost import one_step_cost
from .image_loop import Tiling
from .options import S3DiffOptions
from .section import S3DiffSection


def image_cost(height: int, width: int, section: S3DiffSection, options: S3DiffOptions) -> ImageCost:
    return one_step_cost(Tiling(height, width, section, options), section.encoder_segments, section.decoder_segments,
                         section.latent_channels, options.method is not None)
