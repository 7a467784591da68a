"""Synthetic LR images whose regions differ in what they need: flat, noisy, textured (sharp shapes and
stripes) and blurred. The patch-adaptive benchmark and tests run on them; with random weights they say
nothing of quality, only of which tiles go to which step group and what that saves."""

from __future__ import annotations

import numpy as np

KINDS = ("flat", "noisy", "textured", "blurred")
BLUR_SIGMA = 2.0  # px: about what a x4 downscale of an out-of-focus photo leaves


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of (C, H, W) with reflected borders."""
    radius = int(3 * sigma)
    taps = np.exp(-np.arange(-radius, radius + 1) ** 2 / (2 * sigma**2))
    taps /= taps.sum()
    padded = np.pad(image, ((0, 0), (radius, radius), (radius, radius)), mode="reflect")
    rows = sum(t * padded[:, i:i + image.shape[1], :] for i, t in enumerate(taps))
    return sum(t * rows[:, :, i:i + image.shape[2]] for i, t in enumerate(taps))


def region(kind: str, size: int, seed: int = 0) -> np.ndarray:
    """A (3, size, size) float32 region of ``kind`` in [0, 1]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    discs = sum(0.3 * (((x - cx) ** 2 + (y - cy) ** 2) < r**2) for cx, cy, r in rng.random((10, 3)) * [1, 1, 0.3])
    texture = np.clip(0.2 + 0.6 * discs + 0.1 * (np.sin(40 * x + 3 * y) > 0), 0, 1)[None].repeat(3, 0)
    if kind == "flat":
        out = np.full((3, size, size), 0.4)
    elif kind == "noisy":
        out = np.clip(0.5 + 0.08 * rng.standard_normal((3, size, size)), 0, 1)
    elif kind == "textured":
        out = texture
    elif kind == "blurred":
        out = _blur(texture, BLUR_SIGMA)
    else:
        raise ValueError(f"unknown region kind {kind!r}; one of {', '.join(KINDS)}")
    return out.astype(np.float32)


def mixed_image(size: int, seed: int = 0) -> np.ndarray:
    """(size, size, 3): the four kinds in quadrants (flat, noisy / textured, blurred)."""
    half = size // 2
    kinds = iter(KINDS)
    rows = [[region(next(kinds), half, seed + 2 * r + c) for c in range(2)] for r in range(2)]
    return np.concatenate([np.concatenate(row, axis=2) for row in rows], axis=1).transpose(1, 2, 0).copy()
