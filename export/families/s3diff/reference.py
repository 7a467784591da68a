"""The PyTorch reference of S3Diff: the exactness oracle for the graphs and bundles.

It runs the torch stages (``stages.py``, ``vae_segments.py``: what the graphs are traced from) inside the
runtime's own image loop (``sr_runtime.families.s3diff.image_loop``), so the preprocessing, the three
official tilings and the colour fix are shared, not copied.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from sr_runtime.families.s3diff.image_loop import upscale_image
from sr_runtime.families.s3diff.options import S3DiffOptions
from sr_runtime.family import TileProgress

from .components import S3DiffComponents
from .section import build_section
from .stages import DegradationStage, EncoderStage, UNetStage, decoder_stage
from .vae_segments import segments_of


class S3DiffReference:
    """The S3Diff stages in fp32 on ``device``, as the image loop calls them."""

    def __init__(self, components: S3DiffComponents, device: str = "cpu", batch: int = 1):
        self.components = components
        self.device = torch.device(device)
        self.batch = batch  # latent tiles per UNet call (the official runs one)
        sd = components.sd_turbo
        if self.device.type != "cpu":  # the loaders load fp32 on the CPU
            for module in (sd.vae, sd.unet, sd.text_encoder, components.de_net, components.unet_modulation,
                           components.vae_modulation):
                module.to(self.device)
        self.degradation = DegradationStage(components.de_net).eval()
        self.encoder = EncoderStage(components).eval()
        self.unet = UNetStage.of(components).eval()
        self.decoder = decoder_stage(components).eval()
        encoder, decoder = segments_of(components, "encoder"), segments_of(components, "decoder")
        self.segments = {"encoder": encoder.modules, "decoder": decoder.modules}
        with torch.inference_mode():
            self.prompt_embeds = components.prompt_embeds().to(self.device)
        self.section = build_section(components, encoder, decoder, tuple(self.prompt_embeds.shape))

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).to(self.device)

    @staticmethod
    def _array(tensor: torch.Tensor) -> np.ndarray:
        return tensor.float().cpu().numpy()

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

    @torch.inference_mode()
    def decode(self, latent: np.ndarray, eps: np.ndarray) -> np.ndarray:
        return self._array(self.decoder(self._tensor(latent), self._tensor(eps)))

    @torch.inference_mode()
    def segment(self, kind: str, index: int, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        module = self.segments[kind][index]
        return self._array(module(*(self._tensor(inputs[name]) for name in module.input_names)))

    def upscale(self, image: np.ndarray, options: S3DiffOptions, on_tiles_done: TileProgress | None = None
                ) -> np.ndarray:
        return upscale_image(image, self, self.section, options, self.batch, on_tiles_done)
