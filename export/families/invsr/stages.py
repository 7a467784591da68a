"""The four stages of InvSR as torch modules: the PyTorch reference chains them, and the ONNX
export traces exactly these modules, so a graph and its reference cannot drift apart.

Casts follow the official pipeline (``pipeline_stable_diffusion_inversion_sr.py``) run with an
fp16 UNet/VAE and an fp32 noise predictor under autocast; in fp32 every cast is a no-op.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sr_runtime.families.invsr.section import SCALE

from ...sd.posterior import posterior_sample


class VAEEncoderStage(nn.Module):
    """LR tile in [0,1] -> bicubic x4 -> [-1,1] -> VAE encoder -> scaled latent (posterior sample)."""

    def __init__(self, vae: nn.Module, latent_scale: float):
        super().__init__()
        self.vae = vae
        self.latent_scale = latent_scale

    def forward(self, lr: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        # Bicubic (a = -0.75, no antialias, no clamp) in the VAE's dtype, as the official does.
        up = F.interpolate(lr, scale_factor=SCALE, mode="bicubic", align_corners=False)
        up = up * 2.0 - 1.0
        moments = self.vae.encoder(up)
        if self.vae.quant_conv is not None:
            moments = self.vae.quant_conv(moments)
        return (self.latent_scale * posterior_sample(moments, noise)).to(moments.dtype)


class NoisePredictorStage(nn.Module):
    """LR tile, t_1, noise, z_lr, σ_1 -> z_1 = z_lr + σ_1 · NP(LR, t_1)."""

    def __init__(self, noise_predictor: nn.Module):
        super().__init__()
        self.noise_predictor = noise_predictor

    def forward(
        self, lr: torch.Tensor, timestep: torch.Tensor, noise: torch.Tensor, z_lr: torch.Tensor, sigma: torch.Tensor
    ) -> torch.Tensor:
        # The official runs the predictor under autocast: its output is fp32 whatever the SD dtype.
        predicted = posterior_sample(self.noise_predictor.moments(lr, timestep), noise)
        # add_noise casts σ to the latent dtype (fp16-rounded in the official run) and adds in fp32.
        latent = z_lr + predicted * sigma.to(z_lr.dtype)
        return latent.to(z_lr.dtype)


class UNetStep(nn.Module):
    """One Euler step: input scaling, UNet ε-prediction, update to σ_next (fp32 math, output in latent dtype)."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(
        self,
        latent: torch.Tensor,
        timestep: torch.Tensor,
        sigma: torch.Tensor,
        sigma_next: torch.Tensor,
        prompt_embeds: torch.Tensor,
    ) -> torch.Tensor:
        # Official: latent / (σ² + 1) ** 0.5 with σ an fp32 scalar, result in the latent dtype.
        scaled = (latent.float() / (sigma.float() ** 2 + 1.0) ** 0.5).to(latent.dtype)
        eps = self.unet(scaled, timestep.reshape(()), encoder_hidden_states=prompt_embeds, return_dict=False)[0]
        # EulerDiscreteScheduler.step in its own order: σ·ε is rounded to ε's dtype (fp32 scalar times an
        # fp16 tensor), the rest is fp32, so the rounding matches the official fp16 run.
        sample = latent.float()
        sigma32 = sigma.float()
        denoised = sample - (sigma32 * eps.float()).to(eps.dtype)
        derivative = (sample - denoised) / sigma32
        prev = sample + derivative * (sigma_next.float() - sigma32)
        return prev.to(eps.dtype)


class VAEDecoderStage(nn.Module):
    """Latent -> VAE decoder -> image in [0,1]."""

    def __init__(self, vae: nn.Module, latent_scale: float):
        super().__init__()
        self.vae = vae
        self.latent_scale = latent_scale

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        z = latent / self.latent_scale
        if self.vae.post_quant_conv is not None:
            z = self.vae.post_quant_conv(z)
        image = self.vae.decoder(z)
        return (image / 2 + 0.5).clamp(0, 1)
