"""S3Diff on the runtime side: one chain per stage over the bundle's engines, and the official image loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...backends.base import ChainId, ChainPlan, TileChain
from ...family import Family, TileProgress
from ...manifest import Manifest
from ...resources import ImageCost
from ...sd.one_step import DENOISE, ENCODE, ChainCalls
from ...sd.prompt_embeds import PROMPT_EMBEDS_NAME, load_prompt_embeds
from .chain import DEGRADE, FEEDS, WHOLE, s3diff_plan
from .cost import image_cost
from .graphs import GRAPHS, all_graphs
from .image_loop import upscale_image
from .options import S3DiffOptions
from .section import SCALE, S3DiffSection


class ChainStages(ChainCalls):
    """The image loop's networks as calls of the bundle's chains."""

    def whole(self, lr: np.ndarray, image: np.ndarray, noise: np.ndarray) -> np.ndarray:
        return self._run(WHOLE, lr=lr, image=image, noise=noise)

    def degrade(self, lr: np.ndarray) -> np.ndarray:
        return self._run(DEGRADE, lr=lr)

    def encode(self, image: np.ndarray, deg_score: np.ndarray, noise: np.ndarray) -> np.ndarray:
        return self._run(ENCODE, image=image, deg_score=deg_score, noise=noise)

    def denoise(self, latents: np.ndarray, deg_score: np.ndarray) -> np.ndarray:
        return self._run(DENOISE, latent=latents, deg_score=np.repeat(deg_score, len(latents), axis=0))


class S3DiffFamily(Family):
    name = "s3diff"
    title = "S3Diff"
    scale = SCALE
    section_type = S3DiffSection
    options_type = S3DiffOptions
    graphs = GRAPHS  # and the bundle's VAE segments: see __init__
    default_chain = WHOLE
    feeds = FEEDS
    files = (PROMPT_EMBEDS_NAME,)

    def __init__(self, bundle: Path, manifest: Manifest):
        self.graphs = all_graphs(manifest.section)
        super().__init__(bundle, manifest)
        self.prompt_embeds = load_prompt_embeds(self.bundle, self.section.embed_shape)

    def check_options(self, options: S3DiffOptions) -> None:
        options.check_vae(self.section.vae_factor)

    def plan(self, chain: ChainId, batch: int, height: int, width: int) -> ChainPlan:
        return s3diff_plan(self.section, self.prompt_embeds, chain, batch, height, width)

    def upscale(self, image: np.ndarray, chain: TileChain, options: S3DiffOptions,
                on_tiles_done: TileProgress | None) -> np.ndarray:
        return upscale_image(image, ChainStages(chain), self.section, options,
                             self.manifest.pipeline.batch, on_tiles_done)

    def cost(self, height: int, width: int, options: S3DiffOptions) -> ImageCost:
        return image_cost(height, width, self.section, options)

    def describe(self) -> list[str]:
        s = self.section
        return [
            f"one step    t = {s.timestep}, x0 = (z - {s.sqrt_beta_prod:.6g} eps) / {s.sqrt_alpha_prod:.6g}"
            + (f", clamped to +-{s.clip_sample_range:g}" if s.clip_sample_range is not None else ""),
            f"guidance    {s.guidance_scale:g} (positive and negative prompts as one UNet batch)",
            f"LoRA        rank {s.lora_rank_unet} (UNet), {s.lora_rank_vae} (VAE encoder), modulated per image by "
            "deg_score",
            f"tiled VAE   {len(s.encoder_segments)} encoder and {len(s.decoder_segments)} decoder segments",
        ]
