"""The VAE ends the one-step SD families (S3Diff, OSEDiff) share: the encoder's posterior moments, the decoder's
entry from the one-step x0, and the decoded image's range."""

from __future__ import annotations

import torch
from torch import nn

from .one_step import OneStep


def quantized_moments(vae: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """The encoder's output through quant_conv, where the VAE has one: the posterior's [mean, logvar]."""
    return features if vae.quant_conv is None else vae.quant_conv(features)


class DecoderEntry(nn.Module):
    """Latent, eps -> the one-step x0 (clamped where the scheduler config says so) / scaling_factor ->
    post_quant_conv: what the decoder network takes."""

    def __init__(self, vae: nn.Module, step: OneStep, latent_scale: float):
        super().__init__()
        self.step = step
        self.latent_scale = latent_scale
        self.post_quant_conv = vae.post_quant_conv

    def forward(self, latent: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        # In fp32 whatever the graph's precision: x0 is about 15 times the latent's scale.
        x0 = (latent.float() - self.step.sqrt_beta_prod * eps.float()) / self.step.sqrt_alpha_prod
        if self.step.clip_sample_range is not None:
            x0 = x0.clamp(-self.step.clip_sample_range, self.step.clip_sample_range)
        z = (x0 / self.latent_scale).to(latent.dtype)
        return z if self.post_quant_conv is None else self.post_quant_conv(z)


def to_unit_range(image: torch.Tensor) -> torch.Tensor:
    """The decoder's output clamped to [-1, 1], then * 0.5 + 0.5 as the inference script does."""
    return image.clamp(-1, 1) * 0.5 + 0.5


class DecoderStage(nn.Module):
    """Latent, eps -> x0 -> VAE decoder -> image in [0, 1]."""

    def __init__(self, vae: nn.Module, step: OneStep, latent_scale: float):
        super().__init__()
        self.entry = DecoderEntry(vae, step, latent_scale)
        self.decoder = vae.decoder

    def forward(self, latent: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return to_unit_range(self.decoder(self.entry(latent, eps)))
