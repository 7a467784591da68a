"""S3Diff's VAE cut into the official tiled VAE's segments, the encoder's modulated by deg_score."""

from __future__ import annotations

import torch

from sr_runtime.families.s3diff.graphs import DEG_SCORE

from ...sd.stages import DecoderEntry
from ...sd.vae_segments import Conditioning, SegmentedVAE, VAESegments, build_segments
from .components import S3DiffComponents
from .stages import EncoderModulation


def segments_of(c: S3DiffComponents, kind: str) -> VAESegments:
    """The segments of the "encoder" or "decoder" of ``c``, built once."""
    if kind not in c.vae_segments:
        vae = c.sd_turbo.vae
        conditioning = Conditioning(EncoderModulation(c), (DEG_SCORE,), (torch.zeros(1, 2),))
        c.vae_segments[kind] = build_segments(
            SegmentedVAE(vae, c.latent_channels, c.vae_factor, DecoderEntry(vae, c.one_step, c.latent_scale),
                         conditioning), kind)
    return c.vae_segments[kind]
