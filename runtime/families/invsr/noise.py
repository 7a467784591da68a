"""Posterior noise for the two stochastic places of InvSR, drawn in the official order.

Per pipeline call the official sampler draws, from one generator: the noise predictor's posterior
noise, then the VAE posterior noise, then one (discarded) draw per Euler step. We keep that order
so a seed means the same thing per call, but draw with numpy so the runtime needs no torch; a
seeded run therefore does not reproduce the official CUDA RNG stream bit for bit.
Without a seed both noises are zero, i.e. the posterior means (deterministic output). Patch-adaptive
runs, where tiles run in other orders and batches, draw per tile instead (``TileNoise``).
"""

from __future__ import annotations

import numpy as np


class TileNoise:
    """Patch-adaptive runs: each tile's noises from its own generator, seeded by (seed, tile index), so a
    tile's result does not depend on which group or batch it ran in."""

    def __init__(self, seed: int | None):
        self.seed = seed

    def draw(self, index: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """(noise-predictor noise, VAE noise) of tile ``index``, each float32 of ``shape`` (one tile)."""
        if self.seed is None:
            return np.zeros(shape, np.float32), np.zeros(shape, np.float32)
        rng = np.random.default_rng((self.seed, index))
        return rng.standard_normal(shape, dtype=np.float32), rng.standard_normal(shape, dtype=np.float32)


class PosteriorNoise:
    def __init__(self, seed: int | None, steps: int):
        self.steps = steps
        self._rng = None if seed is None else np.random.default_rng(seed)

    def draw(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """(noise-predictor noise, VAE noise), each float32 of ``shape``."""
        if self._rng is None:
            zeros = np.zeros(shape, np.float32)
            return zeros, zeros.copy()
        predictor = self._rng.standard_normal(shape, dtype=np.float32)
        vae = self._rng.standard_normal(shape, dtype=np.float32)
        for _ in range(self.steps):
            self._rng.standard_normal(shape, dtype=np.float32)
        return predictor, vae
