"""The PyTorch reference of InvSR: the exactness oracle for every exported graph and engine.

It chains the torch stages of ``stages.py`` over the tiles produced by the runtime's own image loop
(``sr_runtime.families.invsr.image_loop``), so tiling, blending and colour fix are shared, not copied.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sr_runtime.families.invsr.image_loop import UpscaleSettings, upscale_array
from sr_runtime.families.invsr.section import Geometry
from sr_runtime.family import TileProgress

from ...sd.loading import SDComponents, load_sd
from ...sd.models import SD_TURBO
from ...sd.prompts import encode_prompt
from .noise_predictor import load_noise_predictor
from .prompt import POSITIVE_PROMPT
from .schedule import Schedule
from .stages import NoisePredictorStage, UNetStep, VAEDecoderStage, VAEEncoderStage

DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


@contextlib.contextmanager
def _quiet_diffusers():
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(level)


@dataclass
class InvSRComponents:
    """Everything the pipeline needs, loaded once; the text encoder is only kept to embed the prompt."""

    noise_predictor: torch.nn.Module
    sd_turbo: SDComponents

    @property
    def scheduler_config(self) -> dict:
        return self.sd_turbo.scheduler_config

    @property
    def latent_scale(self) -> float:
        return float(self.sd_turbo.vae.config.scaling_factor)

    @property
    def geometry(self) -> Geometry:
        """From the VAE's and UNet's depths, as the official sampler derives mod_lq."""
        vae, unet = self.sd_turbo.vae.config, self.sd_turbo.unet.config
        return Geometry.from_configs(int(vae.latent_channels), len(vae.block_out_channels),
                                     len(unet.block_out_channels))

    @property
    def embed_width(self) -> int:
        return int(self.sd_turbo.text_encoder.config.hidden_size)


def load_components(
    sd_turbo: str | Path, noise_predictor: str | Path, noise_predictor_config: str | Path | None = None
) -> InvSRComponents:
    return InvSRComponents(
        noise_predictor=load_noise_predictor(noise_predictor, noise_predictor_config),
        sd_turbo=load_sd(sd_turbo, SD_TURBO),
    )


class InvSRReference:
    """The official sampler's math on tiles; ``dtype`` fp16 mimics the official mixed precision
    (fp16 SD-Turbo, fp32 noise predictor under autocast), fp32 runs everything in fp32."""

    def __init__(
        self,
        components: InvSRComponents,
        schedules: Schedule | Sequence[Schedule],
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        sd = components.sd_turbo
        # The step groups it can run, fewest steps first (one for the official sampler's uniform runs).
        self.schedules = [schedules] if isinstance(schedules, Schedule) else sorted(schedules, key=lambda s: s.steps)
        self.geometry = components.geometry
        self.device = torch.device(device)
        self.dtype = dtype
        scale = components.latent_scale
        with _quiet_diffusers():  # it warns on every dtype move, even with nothing to keep in fp32
            sd.vae.to(self.device, dtype)
            sd.unet.to(self.device, dtype)
        sd.text_encoder.to(self.device, dtype)
        # The noise predictor stays fp32: the official only wraps it in autocast.
        components.noise_predictor.to(self.device, torch.float32)
        self.encoder = VAEEncoderStage(sd.vae, scale).eval()
        self.predictor = NoisePredictorStage(components.noise_predictor).eval()
        self.unet_step = UNetStep(sd.unet).eval()
        self.decoder = VAEDecoderStage(sd.vae, scale).eval()
        with torch.inference_mode():
            self.prompt_embeds = encode_prompt(sd, POSITIVE_PROMPT).to(self.device, dtype)

    def _scalar(self, value: float) -> torch.Tensor:
        return torch.tensor([value], dtype=torch.float32, device=self.device)

    def _autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    @torch.inference_mode()
    def run_tiles(self, lr: np.ndarray, predictor_noise: np.ndarray, vae_noise: np.ndarray, group: int = 0) -> np.ndarray:
        """LR tiles (n,3,P,P) in [0,1] -> SR tiles (n,3,4P,4P) in [0,1], float32 numpy, through the
        schedule of step group ``group``."""
        to = {"device": self.device, "dtype": self.dtype}
        lr_t = torch.from_numpy(lr).to(**to)
        z_lr = self.encoder(lr_t, torch.from_numpy(vae_noise).to(**to))
        s = self.schedules[group]
        with self._autocast():
            latent = self.predictor(
                lr_t,
                self._scalar(s.timesteps[0]),
                torch.from_numpy(predictor_noise).to(**to),
                z_lr,
                self._scalar(s.sigmas[0]),
            )
        embeds = self.prompt_embeds.expand(lr_t.shape[0], -1, -1)
        for i, t in enumerate(s.timesteps):
            latent = self.unet_step(latent, self._scalar(t), self._scalar(s.sigmas[i]), self._scalar(s.sigmas[i + 1]), embeds)
        return self.decoder(latent).float().cpu().numpy()

    def upscale(
        self,
        image: np.ndarray,
        settings: UpscaleSettings,
        on_tiles_done: TileProgress | None = None,
    ) -> np.ndarray:
        return upscale_array(image, self.run_tiles, settings, [s.steps for s in self.schedules], self.geometry,
                             on_tiles_done)
