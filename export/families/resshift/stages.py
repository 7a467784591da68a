"""The three stages of ResShift as torch modules: the PyTorch reference chains them and the ONNX export
traces exactly these, so a graph and its reference cannot drift apart.

The arithmetic follows the official sampler (``models/gaussian_diffusion.py``) operation for operation,
with the schedule's float32 constants as scalar inputs (``schedule.py``); in fp32 every cast is a no-op,
in fp16 the sampler arithmetic runs in fp32 around the fp16 networks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sr_runtime.families.resshift.graphs import SCALE

from .autoencoder import VQModelTorch
from .unet import UNetModelSwin


def to_unit_range(lr: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1] as the official does to the whole image, (x - 0.5) / 0.5 (exact on pixels, so
    doing it per patch after the reflect padding changes nothing)."""
    return (lr - 0.5) / 0.5


class VQEncoderStage(nn.Module):
    """LR patch in [0, 1] -> [-1, 1] -> bicubic x4 -> VQ encoder -> z_y; returns z_T = z_y + prior_scale * noise."""

    def __init__(self, vq: VQModelTorch, scale_factor: float):
        super().__init__()
        self.vq = vq
        self.scale_factor = scale_factor

    def forward(self, lr: torch.Tensor, noise: torch.Tensor, prior_scale: torch.Tensor) -> torch.Tensor:
        # Bicubic with a = -0.75, half-pixel centres, no antialias, no clamp: ONNX Resize says the same.
        up = F.interpolate(to_unit_range(lr), scale_factor=SCALE, mode="bicubic")
        z_y = (self.vq.encode(up) * self.scale_factor).float()
        return (z_y + prior_scale * noise.float()).to(lr.dtype)


class UNetStep(nn.Module):
    """x0 = UNet(x_t / input_divisor, t, LR), then x_{t-1} = coef_latent * x_t + coef_x0 * x0 + noise_std * noise."""

    def __init__(self, unet: UNetModelSwin):
        super().__init__()
        self.unet = unet

    def forward(self, latent: torch.Tensor, lr: torch.Tensor, timestep: torch.Tensor, input_divisor: torch.Tensor,
                coef_latent: torch.Tensor, coef_x0: torch.Tensor, noise_std: torch.Tensor,
                noise: torch.Tensor) -> torch.Tensor:
        x_t = latent.float()
        scaled = (x_t / input_divisor).to(latent.dtype)
        x0 = self.unet(scaled, timestep.expand(latent.shape[0]), to_unit_range(lr)).float()
        mean = coef_latent * x_t + coef_x0 * x0
        return (mean + noise_std * noise.float()).to(latent.dtype)


class VQDecoderStage(nn.Module):
    """Latent -> 1 / scale_factor -> quantise (fp32 argmin) -> VQ decoder -> image, about [-1, 1], unclamped."""

    def __init__(self, vq: VQModelTorch, scale_factor: float):
        super().__init__()
        self.vq = vq
        self.scale_factor = scale_factor

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.vq.decode(1 / self.scale_factor * latent)
