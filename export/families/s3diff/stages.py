"""S3Diff's networks as the torch modules its graphs are traced from; the PyTorch reference runs the very same
modules, so a graph and the reference cannot drift apart. Each module with LoRA layers computes its
modulation matrices from the ``deg_score`` input first."""

from __future__ import annotations

import torch
from torch import nn

from ...sd.posterior import posterior_sample
from .components import GUIDANCE_SCALE, S3DiffComponents
from .lora import ModulationContext


class DegradationStage(nn.Module):
    """LR in [0, 1] -> DEResNet -> (blur, noise) scores, fp32."""

    def __init__(self, de_net: nn.Module):
        super().__init__()
        self.de_net = de_net

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.de_net(lr).float()


class EncoderModulation(nn.Module):
    """Sets the VAE encoder's LoRA matrices for a batch."""

    def __init__(self, c: S3DiffComponents):
        super().__init__()
        self.modulation = c.vae_modulation
        self.context = c.vae_context

    def forward(self, deg_score: torch.Tensor) -> None:
        self.context.matrices = self.modulation(deg_score)


def quantized_moments(vae: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """The encoder's output through quant_conv, where the VAE has one: the posterior's [mean, logvar]."""
    return features if vae.quant_conv is None else vae.quant_conv(features)


class EncoderStage(nn.Module):
    """Padded x4 image in [-1, 1], deg_score, noise -> scaling_factor * posterior sample (noise 0: the mean)."""

    def __init__(self, c: S3DiffComponents):
        super().__init__()
        self.modulate = EncoderModulation(c)
        self.vae = c.sd_turbo.vae
        self.latent_scale = c.latent_scale

    def forward(self, image: torch.Tensor, deg_score: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        self.modulate(deg_score)
        moments = quantized_moments(self.vae, self.vae.encoder(image))
        return (posterior_sample(moments, noise) * self.latent_scale).to(moments.dtype)


class UNetStage(nn.Module):
    """Latents (B), deg_score, prompt embeddings (positive, negative) -> the guided noise prediction, both prompts
    run as one UNet batch of 2B: eps_neg + g * (eps_pos - eps_neg)."""

    def __init__(self, unet: nn.Module, modulation: nn.Module, context: ModulationContext, timestep: int):
        super().__init__()
        self.unet = unet
        self.modulation = modulation
        self.context = context
        self.timestep = timestep
        self.guidance_scale = GUIDANCE_SCALE

    @classmethod
    def of(cls, c: S3DiffComponents) -> UNetStage:
        return cls(c.sd_turbo.unet, c.unet_modulation, c.unet_context, c.one_step.timestep)

    def forward(self, latent: torch.Tensor, deg_score: torch.Tensor, prompt_embeds: torch.Tensor) -> torch.Tensor:
        n = latent.shape[0]
        self.context.matrices = self.modulation(torch.cat([deg_score, deg_score]))
        embeds = torch.cat([prompt_embeds[:1].expand(n, -1, -1), prompt_embeds[1:].expand(n, -1, -1)])
        timestep = torch.tensor(self.timestep, dtype=torch.long, device=latent.device)
        eps = self.unet(torch.cat([latent, latent]), timestep, encoder_hidden_states=embeds.to(latent.dtype),
                        return_dict=False)[0]
        positive, negative = eps[:n], eps[n:]
        return negative + self.guidance_scale * (positive - negative)


class DecoderEntry(nn.Module):
    """Latent, eps -> the one-step x0 (clamped where the scheduler config says so) / scaling_factor ->
    post_quant_conv: what the decoder network takes."""

    def __init__(self, c: S3DiffComponents):
        super().__init__()
        self.step = c.one_step
        self.latent_scale = c.latent_scale
        self.post_quant_conv = c.sd_turbo.vae.post_quant_conv

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

    def __init__(self, c: S3DiffComponents):
        super().__init__()
        self.entry = DecoderEntry(c)
        self.decoder = c.sd_turbo.vae.decoder

    def forward(self, latent: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return to_unit_range(self.decoder(self.entry(latent, eps)))
