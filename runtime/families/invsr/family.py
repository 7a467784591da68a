"""InvSR on the runtime side: the chain of its four engines and the official image loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...backends.base import ChainPlan, TileChain
from ...errors import SRError
from ...family import Family, TileProgress
from ...manifest import Manifest
from ...resources import ImageCost
from ...sd.prompt_embeds import PROMPT_EMBEDS_NAME, load_prompt_embeds
from .chain import FEEDS, invsr_plan
from .graphs import GRAPHS
from .image_loop import InvSROptions, UpscaleSettings, image_cost, upscale_array
from .section import SCALE, InvSRSection


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
        self.prompt_embeds = load_prompt_embeds(self.bundle, self.section.embed_shape)

    def check_options(self, options: InvSROptions) -> None:
        options.group(self.section.group_steps)

    def plan(self, variant: int, batch: int, height: int, width: int) -> ChainPlan:
        if (height, width) != self.tile_shape:
            raise SRError(f"InvSR engines take {self.tile_shape} tiles, got {height}x{width}")
        if not 0 <= variant < len(self.section.groups):
            raise SRError(f"this bundle has {len(self.section.groups)} step group(s), not a group {variant}")
        return invsr_plan(self.section, self.section.groups[variant], self.manifest.pipeline.tile, self.prompt_embeds,
                          batch)

    def upscale(self, image: np.ndarray, chain: TileChain, options: InvSROptions,
                on_tiles_done: TileProgress | None) -> np.ndarray:
        p = self.manifest.pipeline

        def run_tiles(lr: np.ndarray, predictor_noise: np.ndarray, vae_noise: np.ndarray, group: int) -> np.ndarray:
            feeds = {"lr": lr, "predictor_noise": predictor_noise, "vae_noise": vae_noise}
            return np.asarray(chain(feeds, group), dtype=np.float32)

        # vars, not asdict: that would turn a nested record (the steps map's OutputFile) into a dict.
        settings = UpscaleSettings(tile=p.tile, batch=p.batch, **vars(options))
        return upscale_array(image, run_tiles, settings, self.section.group_steps, self.section.geometry,
                             on_tiles_done)

    def cost(self, height: int, width: int, options: InvSROptions) -> ImageCost:
        return image_cost(height, width, self.manifest.pipeline.tile, self.section.geometry, options.color_fix)

    def describe(self) -> list[str]:
        s = self.section
        groups = [f"steps {g.steps}: timesteps {g.cli_timesteps}, sigmas {[round(v, 6) for v in g.sigmas]}"
                  for g in s.groups]
        return [
            *(f"{'groups' if i == 0 else '':12s}{line}" for i, line in enumerate(groups)),
            f"geometry    {s.geometry.latent_channels} latent channels, VAE factor {s.geometry.vae_factor}, "
            f"LR padded to multiples of {s.geometry.pad_multiple}",
        ]
