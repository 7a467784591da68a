"""The PyTorch reference of OSEDiff: the exactness oracle for the graphs and bundles.

It runs the torch stages (``stages.py``, ``vae_segments.py``: what the graphs are traced from) inside the
runtime's own image loop (``sr_runtime.families.osediff.image_loop``), so the preprocessing, the prompt, the three
official tilings and the colour fix are shared, not copied. The prompt is tokenised as the official does it, with
the release's tokenizer (transformers' fast CLIP tokenizer).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from sr_runtime.families.osediff.image_loop import upscale_image
from sr_runtime.families.osediff.options import OSEDiffOptions
from sr_runtime.family import TileProgress
from sr_runtime.sd.vae_graphs import DECODER, ENCODER

from ...sd.one_step_reference import OneStepReference
from ...sd.stages import DecoderStage
from .components import OSEDiffComponents
from .section import build_section
from .stages import EncoderStage, TaggerStage, TextEncoderStage, UNetStage
from .vae_segments import segments_of


class OSEDiffReference(OneStepReference):
    """The OSEDiff stages in fp32 on ``device``, as the image loop calls them."""

    def __init__(self, components: OSEDiffComponents, device: str = "cpu", batch: int = 1):
        sd = components.sd
        super().__init__((sd.vae, sd.unet, sd.text_encoder, components.tagger), device, batch)
        self.components = components
        self.tagger = TaggerStage(components).to(self.device).eval()
        self.text_encoder = TextEncoderStage(components).eval()
        self.encoder = EncoderStage(components).eval()
        self.unet = UNetStage(components).eval()
        self.decoder = DecoderStage(sd.vae, components.one_step, components.latent_scale).eval()
        self.segments = {kind: segments_of(components, kind).modules for kind in (ENCODER, DECODER)}
        self.section = build_section(components)

    def tokenize(self, prompt: str) -> np.ndarray:
        tokenizer = self.components.sd.tokenizer
        return np.asarray(tokenizer(prompt, max_length=tokenizer.model_max_length, padding="max_length",
                                    truncation=True).input_ids, dtype=np.int64)

    @torch.inference_mode()
    def tag(self, image: np.ndarray) -> np.ndarray:
        return self._array(self.tagger(self._tensor(image)))

    @torch.inference_mode()
    def embed(self, input_ids: np.ndarray) -> np.ndarray:
        return self._array(self.text_encoder(self._tensor(input_ids)))

    def body(self, image: np.ndarray, noise: np.ndarray, prompt_embeds: np.ndarray) -> np.ndarray:
        latent = self.encode(image, noise)
        return self.decode(latent, self.denoise(latent, prompt_embeds))

    @torch.inference_mode()
    def encode(self, image: np.ndarray, noise: np.ndarray) -> np.ndarray:
        return self._array(self.encoder(self._tensor(image), self._tensor(noise)))

    @torch.inference_mode()
    def denoise(self, latents: np.ndarray, prompt_embeds: np.ndarray) -> np.ndarray:
        embeds = self._tensor(np.repeat(prompt_embeds, len(latents), axis=0))
        return self._array(self.unet(self._tensor(latents), embeds))

    def upscale(self, image: np.ndarray, options: OSEDiffOptions, progress: TileProgress | None = None,
                on_prompt: Callable[[str], None] | None = None) -> np.ndarray:
        return upscale_image(image, self, self.tokenize, self.section, options, self.batch, progress, on_prompt)
