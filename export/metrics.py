"""How far one output is from another: the figure every parity check and report quotes."""

from __future__ import annotations

import numpy as np


def psnr(got: np.ndarray, want: np.ndarray, peak: float = 1.0) -> float:
    """In dB over a signal of range ``peak`` (1 for images in [0, 1]); inf when equal."""
    mse = float(np.mean((np.asarray(got, np.float64) - np.asarray(want, np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(peak**2 / mse))
