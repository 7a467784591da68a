"""S3Diff on the runtime side: one chain per stage over the bundle's engines, and the official image loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...backends.base import ChainId, ChainPlan, TileChain
from ...family import TileProgress
from ...manifest import Manifest
from ...sd.one_step import DENOISE, ENCODE, ChainCalls
from ...sd.one_step_family import OneStepFamily
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


class S3DiffFamily(OneStepFamily):
    name = "s3diff"
    title = "S3Diff"
    scale = SCALE
    section_type = S3DiffSection
    options_type = S3DiffOptions
    graphs = GRAPHS  # and the bundle's VAE segments: see OneStepFamily
    image_cost = staticmethod(image_cost)
    section_graphs = staticmethod(all_graphs)
    default_chain = WHOLE
    feeds = FEEDS
    files = (PROMPT_EMBEDS_NAME,)

    def __init__(self, bundle: Path, manifest: Manifest):
        super().__init__(bundle, manifest)
        self.prompt_embeds = load_prompt_embeds(self.bundle, self.section.embed_shape)

    def plan(self, chain: ChainId, batch: int, height: int, width: int) -> ChainPlan:
        return s3diff_plan(self.section, self.prompt_embeds, chain, batch, height, width)

    def upscale(self, image: np.ndarray, chain: TileChain, options: S3DiffOptions,
                on_tiles_done: TileProgress | None) -> np.ndarray:
        return upscale_image(image, ChainStages(chain), self.section, options,
                             self.manifest.pipeline.batch, on_tiles_done)

    def describe_own(self) -> list[str]:
        s = self.section
        return [
            f"guidance    {s.guidance_scale:g} (positive and negative prompts as one UNet batch)",
            f"LoRA        rank {s.lora_rank_unet} (UNet), {s.lora_rank_vae} (VAE encoder), modulated per image by "
            "deg_score",
        ]
