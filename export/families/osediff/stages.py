"""OSEDiff's networks as the torch modules its graphs are traced from; the PyTorch reference runs the very same
modules, so a graph and the reference cannot drift apart."""

from __future__ import annotations

import torch
from torch import nn

from ...sd.posterior import posterior_sample
from ...sd.stages import quantized_moments
from .components import OSEDiffComponents
from .ram import IMAGENET_MEAN, IMAGENET_STD


class TaggerStage(nn.Module):
    """The x4 image resized to 384 x 384 in [0, 1] -> ImageNet normalisation -> RAM -> probabilities (fp32)."""

    def __init__(self, c: OSEDiffComponents):
        super().__init__()
        self.tagger = c.tagger
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, tagger_image: torch.Tensor) -> torch.Tensor:
        return self.tagger((tagger_image - self.mean.to(tagger_image.dtype)) / self.std.to(tagger_image.dtype)).float()


class TextEncoderStage(nn.Module):
    """Token ids (as floats) -> the CLIP text encoder's last hidden state."""

    def __init__(self, c: OSEDiffComponents):
        super().__init__()
        self.text_encoder = c.sd.text_encoder

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.text_encoder(input_ids.round().long(), return_dict=False)[0]


class EncoderStage(nn.Module):
    """x4 image in [-1, 1], noise -> scaling_factor * posterior sample (noise 0: the mean)."""

    def __init__(self, c: OSEDiffComponents):
        super().__init__()
        self.vae = c.sd.vae
        self.latent_scale = c.latent_scale

    def forward(self, image: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        moments = quantized_moments(self.vae, self.vae.encoder(image))
        return (posterior_sample(moments, noise) * self.latent_scale).to(moments.dtype)


# diffusers hands the upsamplers their skip connection's size only for latents whose sides are not multiples of
# 2**num_upsamplers; OSEDiff's latents are any size (images are multiples of 8 px), so the graph must always do it.
# Interpolating to the skip's size equals the x2 of the other branch wherever that one applies: exact either way.
ALWAYS_FORWARD_UPSAMPLE_SIZE = 62


class UNetStage(nn.Module):
    """Latents, prompt embeddings -> the UNet's noise prediction at the timestep (no guidance)."""

    def __init__(self, c: OSEDiffComponents):
        super().__init__()
        self.unet = c.sd.unet
        self.unet.num_upsamplers = ALWAYS_FORWARD_UPSAMPLE_SIZE
        self.timestep = c.one_step.timestep

    def forward(self, latent: torch.Tensor, prompt_embeds: torch.Tensor) -> torch.Tensor:
        timestep = torch.tensor(self.timestep, dtype=torch.long, device=latent.device)
        return self.unet(latent, timestep, encoder_hidden_states=prompt_embeds.to(latent.dtype), return_dict=False)[0]
