"""OSEDiff on the runtime side: one chain per stage over the bundle's engines, the prompt tokenised on the host,
and the official image loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...backends.base import ChainId, ChainPlan, TileChain
from ...family import Family, TileProgress
from ...manifest import Manifest
from ...resources import ImageCost
from ...sd.clip_tokenizer import CONFIG_FILE, MERGES_FILE, SPECIAL_TOKENS_FILE, VOCAB_FILE, ClipTokenizer
from ...sd.one_step import DENOISE, ENCODE, ChainCalls
from .chain import BODY, EMBED, FEEDS, TAG, osediff_plan
from .cost import image_cost
from .graphs import GRAPHS, all_graphs
from .image_loop import upscale_image
from .options import OSEDiffOptions
from .section import SCALE, OSEDiffSection

# SD-2.1-base's tokenizer files, which the bundle carries as the release has them.
TOKENIZER_FILES = (VOCAB_FILE, MERGES_FILE, CONFIG_FILE, SPECIAL_TOKENS_FILE)


class ChainStages(ChainCalls):
    """The image loop's networks as calls of the bundle's chains."""

    def tag(self, image: np.ndarray) -> np.ndarray:
        return self._run(TAG, tagger_image=image)

    def embed(self, input_ids: np.ndarray) -> np.ndarray:
        return self._run(EMBED, input_ids=input_ids)

    def body(self, image: np.ndarray, noise: np.ndarray, prompt_embeds: np.ndarray) -> np.ndarray:
        return self._run(BODY, image=image, noise=noise, prompt_embeds=prompt_embeds)

    def encode(self, image: np.ndarray, noise: np.ndarray) -> np.ndarray:
        return self._run(ENCODE, image=image, noise=noise)

    def denoise(self, latents: np.ndarray, prompt_embeds: np.ndarray) -> np.ndarray:
        return self._run(DENOISE, latent=latents, prompt_embeds=np.repeat(prompt_embeds, len(latents), axis=0))


class OSEDiffFamily(Family):
    name = "osediff"
    title = "OSEDiff"
    scale = SCALE
    section_type = OSEDiffSection
    options_type = OSEDiffOptions
    graphs = GRAPHS  # and the bundle's VAE segments: see __init__
    default_chain = BODY
    feeds = FEEDS
    files = TOKENIZER_FILES

    def __init__(self, bundle: Path, manifest: Manifest):
        self.graphs = all_graphs(manifest.section)
        super().__init__(bundle, manifest)
        self.tokenizer = ClipTokenizer.from_folder(self.bundle)

    def check_options(self, options: OSEDiffOptions) -> None:
        options.check_vae(self.section.vae_factor)

    def plan(self, chain: ChainId, batch: int, height: int, width: int) -> ChainPlan:
        return osediff_plan(self.section, chain, batch, height, width)

    def upscale(self, image: np.ndarray, chain: TileChain, options: OSEDiffOptions,
                on_tiles_done: TileProgress | None) -> np.ndarray:
        return upscale_image(image, ChainStages(chain), self.tokenizer.encode, self.section, options,
                             self.manifest.pipeline.batch, on_tiles_done)

    def cost(self, height: int, width: int, options: OSEDiffOptions) -> ImageCost:
        return image_cost(height, width, self.section, options)

    def describe(self) -> list[str]:
        s = self.section
        return [
            f"one step    t = {s.timestep}, x0 = (z - {s.sqrt_beta_prod:.6g} eps) / {s.sqrt_alpha_prod:.6g}"
            + (f", clamped to +-{s.clip_sample_range:g}" if s.clip_sample_range is not None else ""),
            f"LoRA        rank {s.lora_rank_unet} (UNet), {s.lora_rank_vae} (VAE encoder), merged",
            f"prompt      RAM's tags ({len(s.tags)} classes) + the user's prompt, {s.tokens} tokens of {s.embed}",
            f"tiled VAE   {len(s.encoder_segments)} encoder and {len(s.decoder_segments)} decoder segments",
        ]
