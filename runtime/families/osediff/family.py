"""OSEDiff on the runtime side: one chain per stage over the bundle's engines, the prompt tokenised on the host,
and the official image loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...backends.base import ChainId, ChainPlan, TileChain
from ...family import TileProgress
from ...manifest import Manifest
from ...sd.clip_tokenizer import CONFIG_FILE, MERGES_FILE, SPECIAL_TOKENS_FILE, VOCAB_FILE, ClipTokenizer
from ...sd.one_step import DENOISE, ENCODE, ChainCalls
from ...sd.one_step_family import OneStepFamily
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


class OSEDiffFamily(OneStepFamily):
    name = "osediff"
    title = "OSEDiff"
    scale = SCALE
    section_type = OSEDiffSection
    options_type = OSEDiffOptions
    graphs = GRAPHS  # and the bundle's VAE segments: see OneStepFamily
    image_cost = staticmethod(image_cost)
    section_graphs = staticmethod(all_graphs)
    default_chain = BODY
    feeds = FEEDS
    files = TOKENIZER_FILES

    def __init__(self, bundle: Path, manifest: Manifest):
        super().__init__(bundle, manifest)
        self.tokenizer = ClipTokenizer.from_folder(self.bundle)

    def plan(self, chain: ChainId, batch: int, height: int, width: int) -> ChainPlan:
        return osediff_plan(self.section, chain, batch, height, width)

    def upscale(self, image: np.ndarray, chain: TileChain, options: OSEDiffOptions,
                on_tiles_done: TileProgress | None) -> np.ndarray:
        return upscale_image(image, ChainStages(chain), self.tokenizer.encode, self.section, options,
                             self.manifest.pipeline.batch, on_tiles_done)

    def describe_own(self) -> list[str]:
        s = self.section
        return [
            f"LoRA        rank {s.lora_rank_unet} (UNet), {s.lora_rank_vae} (VAE encoder), merged",
            f"prompt      RAM's tags ({len(s.tags)} classes) + the user's prompt, {s.tokens} tokens of {s.embed}",
        ]
