"""Small pieces both ResShift networks' modules share."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import GROUPS


class GroupNorm32(nn.GroupNorm):
    """The official ``GroupNorm32``: 32 groups, computed in fp32 whatever the activations' dtype (so an
    fp16 export keeps it in fp32 too), the result cast back."""

    def __init__(self, channels: int):
        super().__init__(GROUPS, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(), self.eps).to(x.dtype)


class Upsample(nn.Module):
    """Nearest x2, then a 3x3 conv if ``with_conv``: the same in both networks' official code."""

    def __init__(self, channels: int, with_conv: bool):
        super().__init__()
        self.with_conv = with_conv
        if with_conv:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.with_conv else x


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: int = 10000) -> torch.Tensor:
    """The UNet's sinusoidal embedding of the (integer) step index: [cos, sin], float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(start=0, end=half, dtype=torch.float32) / half)
    args = timesteps[:, None].float() * freqs[None].to(timesteps.device)
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding
