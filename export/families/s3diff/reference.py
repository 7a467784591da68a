"""The PyTorch reference of S3Diff: the exactness oracle for the graphs and bundles.

It runs the torch stages (``stages.py``, ``vae_segments.py``: what the graphs are traced from) inside the
runtime's own image loop (``sr_runtime.families.s3diff.image_loop``), so the preprocessing, the three
official tilings and the colour fix are shared, not copied.
"""

from __future__ import annotations

import numpy as np
import torch

from sr_runtime.families.s3diff.image_loop import upscale_image
from sr_runtime.families.s3diff.options import S3DiffOptions
from sr_runtime.family import TileProgress

from ...sd.one_step_reference import OneStepReference
from .components import S3DiffComponents
from .section import build_section
from .stages import DegradationStage, EncoderStage, UNetStage, decoder_stage
from .vae_segments import segments_of


class S3DiffReference(OneStepReference):
    """The S3Diff stages in fp32 on ``device``, as the image loop calls them."""

    def __init__(self, components: S3DiffComponents, device: str = "cpu", batch: int = 1):
        sd = components.sd_turbo
        super().__init__((sd.vae, sd.unet, sd.text_encoder, components.de_net, components.unet_modulation,
                          components.vae_modulation), device, batch)
        self.components = components
        self.degradation = DegradationStage(components.de_net).eval()
        self.encoder = EncoderStage(components).eval()
        self.unet = UNetStage.of(components).eval()
        self.decoder = decoder_stage(components).eval()
        encoder, decoder = segments_of(components, "encoder"), segments_of(components, "decoder")
        self.segments = {"encoder": encoder.modules, "decoder": decoder.modules}
        with torch.inference_mode():
            self.prompt_embeds = components.prompt_embeds().to(self.device)
        self.section = build_section(components, encoder, decoder, tuple(self.prompt_embeds.shape))

    def whole(self, lr: np.ndarray, image: np.ndarray, noise: np.ndarray) -> np.ndarray:
        deg_score = self.degrade(lr)
        latent = self.encode(image, deg_score, noise)
        return self.decode(latent, self.denoise(latent, deg_score))

    @torch.inference_mode()
    def degrade(self, lr: np.ndarray) -> np.ndarray:
        return self._array(self.degradation(self._tensor(lr)))

    @torch.inference_mode()
    def encode(self, image: np.ndarray, deg_score: np.ndarray, noise: np.ndarray) -> np.ndarray:
        return self._array(self.encoder(self._tensor(image), self._tensor(deg_score), self._tensor(noise)))

    @torch.inference_mode()
    def denoise(self, latents: np.ndarray, deg_score: np.ndarray) -> np.ndarray:
        deg = self._tensor(np.repeat(deg_score, len(latents), axis=0))
        return self._array(self.unet(self._tensor(latents), deg, self.prompt_embeds))

    def upscale(self, image: np.ndarray, options: S3DiffOptions, on_tiles_done: TileProgress | None = None
                ) -> np.ndarray:
        return upscale_image(image, self, self.section, options, self.batch, on_tiles_done)
