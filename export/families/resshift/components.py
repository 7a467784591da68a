"""What a ResShift / SinSR build or reference is made of: the loaded networks, the config and the
sampling constants the runtime will need (its manifest section)."""

from __future__ import annotations

from dataclasses import dataclass

from sr_runtime.families.resshift.section import ResShiftSection

from .autoencoder import VQModelTorch
from .config import ResShiftConfig
from .official_configs import ModelSpec
from .schedule import sampling_steps
from .unet import UNetModelSwin


@dataclass
class ResShiftComponents:
    spec: ModelSpec
    config: ResShiftConfig
    unet: UNetModelSwin
    vq: VQModelTorch

    def section(self) -> ResShiftSection:
        prior_scale, steps = sampling_steps(self.config.diffusion, self.spec.code, self.spec.one_step)
        return ResShiftSection(
            model=self.spec.name,
            latent_channels=self.config.vq.embed_dim,
            pad_multiple=self.config.pad_multiple,
            prior_scale=prior_scale,
            steps=steps,
            config=self.config.params,
        )
