"""The noise contract: the same seeded draws on every backend and machine, in the official order.

Per input image one ``numpy.random.default_rng(seed)``; per patch (row-major, height outer) the prior
draw, then one draw after each UNet call, from t = T-1 down to 0; the draw after the last call is made
and discarded (its posterior std is 0; SinSR: the prior and one discarded draw). Every draw is
``rng.standard_normal((1, C, h, w)).astype(np.float32)`` at the latent size of the padded patch, so
batching patches cannot change the stream. Zero noise makes every draw zero: the posterior means.
"""

from __future__ import annotations

import numpy as np

DEFAULT_SEED = 12345  # the official CLIs' --seed


class PatchNoise:
    def __init__(self, seed: int | None, draws_per_patch: int):
        """``seed`` None: every draw is zero."""
        self.draws_per_patch = draws_per_patch
        self._rng = None if seed is None else np.random.default_rng(seed)

    def patch(self, shape: tuple[int, int, int, int]) -> list[np.ndarray]:
        """The draws of the next patch, in order, each float32 of ``shape`` (1, C, h, w)."""
        if self._rng is None:
            return [np.zeros(shape, np.float32) for _ in range(self.draws_per_patch)]
        return [self._rng.standard_normal(shape).astype(np.float32) for _ in range(self.draws_per_patch)]
