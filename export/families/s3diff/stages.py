"""S3Diff's networks as the torch modules its graphs are traced from; the PyTorch reference runs the very same
modules, so a graph and the reference cannot drift apart. Each module with LoRA layers computes its
modulation matrices from the ``deg_score`` input first."""

from __future__ import annotations

import torch
from torch import nn

from ...sd.posterior import posterior_sample
from ...sd.stages import DecoderStage, quantized_moments
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


def decoder_stage(c: S3DiffComponents) -> DecoderStage:
    return DecoderStage(c.sd_turbo.vae, c.one_step, c.latent_scale)
