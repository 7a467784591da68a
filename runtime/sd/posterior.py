"""The VAE posterior on the runtime side: its noise (drawn with numpy) and the scaled sample the UNet starts from."""

from __future__ import annotations

import numpy as np

from ..checks import is_int
from ..errors import SRError

MAX_SEED = 2**63 - 1


def posterior_noise(seed: int | None, shape: tuple[int, ...]) -> np.ndarray:
    """The VAE posterior's noise: zero (the mean; deterministic) without a seed, else one numpy draw per image.

    The official samples ``latent_dist.sample()`` from torch's global generator (seeded only by --seed,
    through accelerate's set_seed): a seeded run here does not reproduce its CUDA stream bit for bit."""
    if seed is None:
        return np.zeros(shape, np.float32)
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


def posterior_sample(moments: np.ndarray, noise: np.ndarray, latent_scale: float) -> np.ndarray:
    """scaling_factor * (mean + std * noise) of the [mean, logvar] moments (diffusers' rule)."""
    mean, logvar = np.split(moments.astype(np.float32), 2, axis=1)
    std = np.exp(np.float32(0.5) * np.clip(logvar, -30.0, 20.0))
    return (mean + std * noise) * np.float32(latent_scale)


def check_seed(seed: int | None) -> None:
    """A posterior seed is None (the mean) or an integer numpy's generators take."""
    if seed is not None and not is_int(seed, 0, MAX_SEED):
        raise SRError(f"seed {seed!r} must be an integer from 0 to {MAX_SEED}")
