"""How many steps an LR tile needs: a cheap difficulty score per tile, and the policy that maps it to
one of a bundle's step groups (patch-adaptive sampling, after PatchScaler's group sampling).

The InvSR paper observes that noisy inputs do best with one step while blurry ones gain from more, and
flat regions have nothing to restore. The score follows that, from two measures on the tile's luma:

- detail: the mean gradient magnitude. Below ``FLAT_GRADIENT`` (about 1.5 grey levels of 255 per
  pixel) the tile is flat (sky, a wall, a smooth ramp): difficulty 0.
- sharpness: the share of the detail that sits at the highest frequency, Immerkær's noise estimate
  (a 3x3 Laplacian-difference kernel, J. Immerkær, "Fast Noise Variance Estimation", 1996) over the
  mean gradient. Noise and crisp texture put much of their energy there (about 1 for pure noise,
  0.4 for sharp edges), blur removes it (0.03 at a Gaussian blur of 1 px, under 0.01 at 2 px).
  Difficulty rises from 0 at ``SHARP`` to 1 at ``BLURRY`` on a log scale.

Both are a few array passes over a 128 x 128 tile (well under a millisecond, against seconds per tile
for the networks). Quality cannot be judged with random weights: tune ``--adaptive-thresholds`` with
the real checkpoints (``scripts/adaptive_quality.py``).
"""

from __future__ import annotations

import math

import numpy as np

from ...errors import SRError

FLAT_GRADIENT = 0.006
SHARP, BLURRY = 1.0, 0.01  # sharpness at difficulty 0 and 1
# Difficulty below the first threshold -> the first (fewest steps) group, ... above the last -> the last.
DEFAULT_THRESHOLDS = (0.15, 0.5)
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # BT.601


def _noise_sigma(gray: np.ndarray) -> float:
    """Immerkær's estimate of the noise standard deviation."""
    g = gray.astype(np.float64)
    laplacian_difference = (
        g[:-2, :-2] - 2 * g[:-2, 1:-1] + g[:-2, 2:]
        - 2 * g[1:-1, :-2] + 4 * g[1:-1, 1:-1] - 2 * g[1:-1, 2:]
        + g[2:, :-2] - 2 * g[2:, 1:-1] + g[2:, 2:]
    )
    return math.sqrt(math.pi / 2) * float(np.abs(laplacian_difference).mean()) / 6


def tile_difficulty(tile: np.ndarray) -> float:
    """``tile`` (3, h, w) float in [0, 1] -> difficulty in [0, 1] (0: fewest steps suffice)."""
    gray = np.tensordot(LUMA, tile, axes=1)
    dy, dx = np.gradient(gray.astype(np.float64))
    detail = float(np.hypot(dx, dy).mean())
    if detail < FLAT_GRADIENT:
        return 0.0
    sharpness = max(_noise_sigma(gray) / detail, 1e-12)
    position = (math.log10(SHARP) - math.log10(sharpness)) / (math.log10(SHARP) - math.log10(BLURRY))
    return min(max(position, 0.0), 1.0)


def check_thresholds(thresholds: tuple[float, ...], groups: int) -> None:
    if len(thresholds) != groups - 1:
        raise SRError(f"{groups} step groups need {groups - 1} adaptive thresholds, got {len(thresholds)}: "
                      f"{', '.join(map(str, thresholds))}")
    if any(not 0 <= t <= 1 for t in thresholds) or list(thresholds) != sorted(thresholds):
        raise SRError(f"adaptive thresholds must rise within [0, 1], got {', '.join(map(str, thresholds))}")


def default_thresholds(groups: int) -> tuple[float, ...]:
    """The defaults for three groups; evenly spread over [0, 1] for other counts."""
    if groups == len(DEFAULT_THRESHOLDS) + 1:
        return DEFAULT_THRESHOLDS
    return tuple((i + 1) / groups for i in range(groups - 1))


def assign_groups(difficulties: np.ndarray, thresholds: tuple[float, ...]) -> np.ndarray:
    """The group index of each tile: how many thresholds its difficulty reaches."""
    return np.searchsorted(np.asarray(thresholds), difficulties, side="right")
