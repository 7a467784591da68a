"""InvSR on the runtime side: the chain of its four engines and the official image loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...backends.base import ChainId, ChainPlan, TileChain
from ...errors import SRError
from ...family import Family, TileProgress, no_chain
from ...manifest import Manifest
from ...resources import ImageCost
from ...sd.prompt_embeds import PROMPT_EMBEDS_NAME, load_prompt_embeds
from .chain import FEEDS, STEPS, invsr_plan, steps_chain
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
    default_chain = steps_chain(0)
    feeds = FEEDS
    files = (PROMPT_EMBEDS_NAME,)

    def __init__(self, bundle: Path, manifest: Manifest):
        super().__init__(bundle, manifest)
        self.prompt_embeds = load_prompt_embeds(self.bundle, self.section.embed_shape)

    def check_options(self, options: InvSROptions) -> None:
        options.group(self.section.group_steps)

    def plan(self, chain: ChainId, batch: int, height: int, width: int) -> ChainPlan:
        """One chain per step group: ``steps_chain(group)``."""
        groups = len(self.section.groups)
        if chain != steps_chain(chain.index) or not 0 <= chain.index < groups:
            raise no_chain(self.title, chain, f"one per step group: {STEPS}, index 0 to {groups - 1}")
        if (height, width) != self.tile_shape:
            raise SRError(f"InvSR engines take {self.tile_shape} tiles, got {height}x{width}")
        return invsr_plan(self.section, self.section.groups[chain.index], self.manifest.pipeline.tile,
                          self.prompt_embeds, batch)

    def upscale(self, image: np.ndarray, chain: TileChain, options: InvSROptions,
                on_tiles_done: TileProgress | None) -> np.ndarray:
        p = self.manifest.pipeline

        def run_tiles(lr: np.ndarray, predictor_noise: np.ndarray, vae_noise: np.ndarray, group: int) -> np.ndarray:
            feeds = dict(zip(FEEDS, (lr, predictor_noise, vae_noise), strict=True))
            return np.asarray(chain(feeds, steps_chain(group)), dtype=np.float32)

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
