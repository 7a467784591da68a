"""InvSR on the runtime side: the chain of its four engines and the official image loop."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from ...backends.base import REBUILD_HINT, ChainPlan, TileChain
from ...errors import SRError
from ...family import Family, TileProgress
from ...manifest import Manifest
from ...resources import ImageCost
from .chain import FEEDS, invsr_plan
from .graphs import GRAPHS
from .image_loop import InvSROptions, UpscaleSettings, image_cost, upscale_array
from .section import SCALE, InvSRSection

PROMPT_EMBEDS_NAME = "prompt_embeds.npy"


def load_prompt_embeds(bundle: Path, section: InvSRSection) -> np.ndarray:
    path = bundle / PROMPT_EMBEDS_NAME
    try:
        embeds = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise SRError(f"{path} is unreadable ({err}); {REBUILD_HINT}") from err
    if list(embeds.shape) != section.embed_shape:
        raise SRError(f"{path} has shape {embeds.shape}, the manifest says {section.embed_shape}; {REBUILD_HINT}")
    return embeds.astype(np.float32)


class InvSRFamily(Family):
    name = "invsr"
    title = "InvSR"
    scale = SCALE
    section_type = InvSRSection
    options_type = InvSROptions
    graphs = GRAPHS
    feeds = FEEDS
    files = (PROMPT_EMBEDS_NAME,)

    def __init__(self, bundle: Path, manifest: Manifest):
        super().__init__(bundle, manifest)
        self.prompt_embeds = load_prompt_embeds(self.bundle, self.section)

    def plan(self, batch: int, height: int, width: int) -> ChainPlan:
        if (height, width) != self.tile_shape:
            raise SRError(f"InvSR engines take {self.tile_shape} tiles, got {height}x{width}")
        return invsr_plan(self.section, self.manifest.pipeline.tile, self.prompt_embeds, batch)

    def upscale(self, image: np.ndarray, chain: TileChain, options: InvSROptions,
                on_tiles_done: TileProgress | None) -> np.ndarray:
        p = self.manifest.pipeline

        def run_tiles(lr: np.ndarray, predictor_noise: np.ndarray, vae_noise: np.ndarray) -> np.ndarray:
            feeds = {"lr": lr, "predictor_noise": predictor_noise, "vae_noise": vae_noise}
            return np.asarray(chain(feeds), dtype=np.float32)

        settings = UpscaleSettings(tile=p.tile, batch=p.batch, **asdict(options))
        return upscale_array(image, run_tiles, settings, self.section.steps, self.section.geometry, on_tiles_done)

    def cost(self, height: int, width: int, options: InvSROptions) -> ImageCost:
        return image_cost(height, width, self.manifest.pipeline.tile, self.section.geometry, options.color_fix)

    def describe(self) -> list[str]:
        s = self.section
        return [
            f"timesteps   {s.cli_timesteps}  (t = {s.timesteps})",
            f"sigmas      {[round(v, 6) for v in s.sigmas]}",
            f"geometry    {s.geometry.latent_channels} latent channels, VAE factor {s.geometry.vae_factor}, "
            f"LR padded to multiples of {s.geometry.pad_multiple}",
        ]
