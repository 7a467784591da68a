"""The image-level loop of OSEDiff (``test_osediff.py`` + ``OSEDiff_test.forward``), shared by the PyTorch reference
and the engine runtime; only the networks differ (``OSEDiffStages``).

LR -> Pillow's x4 (enlarged first under 128 px, cut to multiples of 8) -> RAM's tags on its 384 x 384 resize -> the
prompt string -> CLIP token ids -> text encoder -> VAE encoder (tiled above the encoder tile) -> posterior -> UNet
noise prediction (latent tiles above the latent tile) -> one-step x0 -> VAE decoder (tiled above the decoder tile)
-> made 8-bit -> AdaIN (or wavelet) colour fix against the x4 image.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ...checks import check_rgb_image
from ...family import TileProgress
from ...sd.finish import finish
from ...sd.one_step import SegmentedVAE, Tiling, run_staged
from ...sd.posterior import posterior_noise
from .options import OSEDiffOptions
from .preprocess import tagger_input, upscale, upscaled_size, vae_input
from .prompt import tag_string, validation_prompt
from .section import OSEDiffSection


class OSEDiffStages(Protocol):
    """The networks, as whole-image calls."""

    def tag(self, image: np.ndarray) -> np.ndarray:
        """(1, 3, 384, 384) in [0, 1] -> (1, classes) probabilities."""

    def embed(self, input_ids: np.ndarray) -> np.ndarray:
        """(1, tokens) token ids -> (1, tokens, embed) prompt embeddings."""

    def encode(self, image: np.ndarray, noise: np.ndarray) -> np.ndarray: ...

    def denoise(self, latents: np.ndarray, prompt_embeds: np.ndarray) -> np.ndarray:
        """Noise predictions of latents (n, C, h, w) of one image (``prompt_embeds`` (1, tokens, embed))."""

    def decode(self, latent: np.ndarray, eps: np.ndarray) -> np.ndarray: ...

    def segment(self, kind: str, index: int, inputs: Mapping[str, np.ndarray]) -> np.ndarray: ...

    def body(self, image: np.ndarray, noise: np.ndarray, prompt_embeds: np.ndarray) -> np.ndarray:
        """An image that needs no tiling: encoder -> UNet -> decoder in one go."""


Tokenize = Callable[[str], np.ndarray]  # a prompt -> its (tokens,) ids


@dataclass
class _Prompted:
    """The stages with the image's prompt embeddings bound, as the shared loop calls them."""

    stages: OSEDiffStages
    prompt_embeds: np.ndarray

    def encode(self, image: np.ndarray, noise: np.ndarray) -> np.ndarray:
        return self.stages.encode(image, noise)

    def denoise(self, latents: np.ndarray) -> np.ndarray:
        return self.stages.denoise(latents, self.prompt_embeds)

    def decode(self, latent: np.ndarray, eps: np.ndarray) -> np.ndarray:
        return self.stages.decode(latent, eps)

    def segment(self, kind: str, index: int, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.stages.segment(kind, index, inputs)


def tiling(lr_height: int, lr_width: int, section: OSEDiffSection, options: OSEDiffOptions) -> Tiling:
    return Tiling(*upscaled_size(lr_height, lr_width), section.vae_factor, options.tiles)


def image_prompt(upscaled: np.ndarray, stages: OSEDiffStages, section: OSEDiffSection, options: OSEDiffOptions) -> str:
    """The prompt of the x4 image: its tags, then the user's prompt."""
    probabilities = stages.tag(tagger_input(upscaled))[0]
    return validation_prompt(tag_string(probabilities, section.tags, section.thresholds), options.prompt)


def upscale_image(image: np.ndarray, stages: OSEDiffStages, tokenize: Tokenize, section: OSEDiffSection,
                  options: OSEDiffOptions, batch: int, on_tiles_done: TileProgress | None = None,
                  on_prompt: Callable[[str], None] | None = None) -> np.ndarray:
    """``image`` (h, w, 3) float32 in [0, 1] -> the official output (H, W, 3) float32 in [0, 1]: x4, larger for an LR
    under 128 px (see ``preprocess``); ``batch`` latent tiles per UNet call; ``on_prompt`` hears the prompt."""
    check_rgb_image(image)
    grid = tiling(image.shape[0], image.shape[1], section, options)
    upscaled = upscale(image)
    prompt = image_prompt(upscaled, stages, section, options)
    if on_prompt is not None:
        on_prompt(prompt)
    prompt_embeds = stages.embed(tokenize(prompt)[None].astype(np.float32))
    noise = posterior_noise(options.seed, (1, section.latent_channels, *grid.latent))
    if grid.any:
        vae = SegmentedVAE(section.encoder_segments, section.decoder_segments, section.latent_scale)
        sr = run_staged(vae_input(upscaled), noise, _Prompted(stages, prompt_embeds), vae, grid, batch)
    else:
        sr = stages.body(vae_input(upscaled), noise, prompt_embeds)
    if on_tiles_done is not None:
        on_tiles_done(grid.unet_tiles, grid.unet_tiles)
    return finish(sr[0], upscaled, options.method)
