"""OSEDiff's section of the manifest: the constants the export side derived from the loaded checkpoints and
configs (the one-step DDPM coefficients, the latent scale, RAM's tags and class thresholds, the prompt's shape)
and the layout of the VAE segments the official tiled VAE runs between its group norms."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...manifest import PipelineInfo
from ...sd.vae_segment import VAESegment, segments_problem

SCALE = 4  # test_osediff.py --upscale
# test_osediff.py --process_size 512: an LR whose short side is under 512 // 4 px is first enlarged to that.
MIN_LR_SIDE = 512 // SCALE
SIZE_MULTIPLE = 8  # the x4 image is cut down to multiples of 8 px (a LANCZOS resize)
TAGGER_SIZE = 384  # RAM sees the x4 image resized to 384 x 384 (its window masks are built for that size)


@dataclass
class OSEDiffSection:
    latent_channels: int
    latent_scale: float  # the VAE's scaling_factor
    vae_factor: int  # image px per latent px
    timestep: int  # the UNet's only timestep (the official 999)
    # The one-step DDPM x0 of SD-2.1-base's scheduler config at the timestep: (z - sqrt_beta * eps) / sqrt_alpha.
    sqrt_alpha_prod: float
    sqrt_beta_prod: float
    clip_sample_range: float | None  # x0 is clamped to +-range when the config asks for clip_sample
    lora_rank_unet: int
    lora_rank_vae: int
    tags: list[str]  # RAM's tag list, one per class
    thresholds: list[float]  # a class's tag is in the prompt when its probability is above its threshold
    tokens: int  # the text encoder's prompt length (CLIP's 77)
    embed: int  # its width (SD-2.1's 1024)
    encoder_segments: list[VAESegment]
    decoder_segments: list[VAESegment]

    def problem(self, pipeline: PipelineInfo) -> str | None:
        if pipeline.scale != SCALE:
            return f"scale {pipeline.scale}: OSEDiff bundles are x{SCALE}"
        if self.latent_channels < 1 or self.vae_factor < 1 or SIZE_MULTIPLE % self.vae_factor:
            return f"latent channels {self.latent_channels} and VAE factor {self.vae_factor} do not fit"
        if not self.sqrt_alpha_prod > 0:
            return f"sqrt_alpha_prod {self.sqrt_alpha_prod} must be positive"
        if not self.tags or len(self.tags) != len(self.thresholds):
            return f"{len(self.tags)} tags and {len(self.thresholds)} thresholds: one of each per class"
        if not all(math.isfinite(t) for t in self.thresholds):
            return "a class threshold is not finite"
        if self.tokens < 2 or self.embed < 1:
            return f"a prompt of {self.tokens} tokens of width {self.embed}"
        return segments_problem(self.encoder_segments, self.decoder_segments)
