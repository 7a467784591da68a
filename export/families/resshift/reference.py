"""The PyTorch reference of ResShift and SinSR: the exactness oracle for every exported graph and engine.

It chains the torch stages of ``stages.py`` over the patch batches of the runtime's own image loop
(``sr_runtime.families.resshift.image_loop``), so chopping, padding, the noise stream and the averaging
are shared, not copied. fp32 by default: that is what is compared with the official sampler; the
benchmarks run it in fp16 on GPUs (the sampler arithmetic stays fp32 inside the stages).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict

import numpy as np
import torch

from sr_runtime.backends.base import LR_FEED
from sr_runtime.families.resshift.chain import PRIOR_NOISE, step_noise
from sr_runtime.families.resshift.graphs import SCALE
from sr_runtime.families.resshift.image_loop import image_cost, plan_patches, upscale_image
from sr_runtime.families.resshift.options import OFFICIAL_CHOP_SIZE, ResShiftOptions
from sr_runtime.family import TileProgress
from sr_runtime.resources import ImageCost

from .components import ResShiftComponents
from .stages import UNetStep, VQDecoderStage, VQEncoderStage


class ResShiftReference:
    def __init__(self, components: ResShiftComponents, device: str = "cpu", dtype: torch.dtype = torch.float32):
        self.device = torch.device(device)
        self.dtype = dtype
        self.section = components.section()
        self.first_level_channels = components.config.vq.ch * components.config.vq.ch_mult[0]
        scale_factor = components.config.diffusion.scale_factor
        components.unet.to(self.device, dtype)
        components.vq.to(self.device, dtype)
        self.encoder = VQEncoderStage(components.vq, scale_factor).eval()
        self.step = UNetStep(components.unet).eval()
        self.decoder = VQDecoderStage(components.vq, scale_factor).eval()

    def _array(self, value: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(value, np.float32)).to(self.device, self.dtype)

    def _scalar(self, value: float) -> torch.Tensor:
        return torch.tensor([value], dtype=torch.float32, device=self.device)

    @torch.inference_mode()
    def run_batch(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        """The engine chain's computation on one patch batch (``chain.feed_names``) -> SR patches."""
        lr = self._array(feeds[LR_FEED])
        latent = self.encoder(lr, self._array(feeds[PRIOR_NOISE]), self._scalar(self.section.prior_scale))
        last = len(self.section.steps) - 1
        for i, step in enumerate(self.section.steps):
            noise = torch.zeros_like(latent) if i == last else self._array(feeds[step_noise(i)])
            constants = {name: self._scalar(value) for name, value in asdict(step).items()}
            latent = self.step(latent, lr, noise=noise, **constants)
        return self.decoder(latent).float().cpu().numpy()

    def upscale(self, image: np.ndarray, options: ResShiftOptions, on_tiles_done: TileProgress | None = None) -> np.ndarray:
        """The official sampler on ``image`` (H,W,3) in [0,1]: one patch per network call, as its chop_bs=1."""
        chopping = options.chopping(OFFICIAL_CHOP_SIZE)
        return upscale_image(image, self.run_batch, self.section, options, chopping, 1, on_tiles_done)

    def cost(self, height: int, width: int, options: ResShiftOptions) -> ImageCost:
        """The image loop's buffers and about four feature maps of the autoencoder's first level, at the
        SR size of a padded patch: what its encoder and decoder hold at their peak."""
        chopping = options.chopping(OFFICIAL_CHOP_SIZE)
        loop = image_cost(height, width, chopping, self.section, 1)
        padded = plan_patches(height, width, chopping, self.section.pad_multiple)
        sr_patch_px = SCALE * padded.padded_height * SCALE * padded.padded_width
        return ImageCost(loop.memory + 4 * self.first_level_channels * sr_patch_px * 4, loop.tiles)
