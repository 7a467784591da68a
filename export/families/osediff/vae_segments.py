"""OSEDiff's VAE cut into the official tiled VAE's segments (nothing conditions its encoder)."""

from __future__ import annotations

from ...sd.stages import DecoderEntry
from ...sd.vae_segments import SegmentedVAE, VAESegments, build_segments
from .components import OSEDiffComponents


def segments_of(c: OSEDiffComponents, kind: str) -> VAESegments:
    """The segments of the "encoder" or "decoder" of ``c``, built once."""
    if kind not in c.vae_segments:
        vae = c.sd.vae
        c.vae_segments[kind] = build_segments(
            SegmentedVAE(vae, c.latent_channels, c.vae_factor, DecoderEntry(vae, c.one_step, c.latent_scale)), kind)
    return c.vae_segments[kind]
