"""The VAE posterior of the SD families' encoders, sampled with noise given from outside (the runtime draws it)."""

from __future__ import annotations

import torch


def posterior_sample(moments: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """mean + std * noise of a diagonal Gaussian given as [mean, logvar] channels (diffusers' rule).

    Always in fp32: exp() is where fp16 breaks, and with zero noise (posterior means) the result
    equals the official fp16 arithmetic exactly.
    """
    mean, logvar = torch.chunk(moments.float(), 2, dim=1)
    noise = noise.float()
    std = torch.exp(0.5 * torch.clamp(logvar, -30.0, 20.0))
    return mean + std * noise
