"""The last steps of the one-step SD families' inference scripts: the decoded image made 8-bit
(``transforms.ToPILImage`` truncates floats to bytes, ``ToTensor`` divides by 255 again), then the colour fix
against the upscaled input."""

from __future__ import annotations

import numpy as np

from ..color import adain_color_fix, wavelet_color_fix
from ..errors import SRError

COLOR_FIXES = {"wavelet": wavelet_color_fix, "adain": adain_color_fix}


def to_bytes(image: np.ndarray) -> np.ndarray:
    """ToPILImage's float -> uint8 (mul(255) and a truncating cast), back as ToTensor gives it."""
    return (image * np.float32(255)).astype(np.uint8).astype(np.float32) / np.float32(255)


def finish(sr: np.ndarray, reference: np.ndarray, method: str | None) -> np.ndarray:
    """The SR image in [0, 1] (C, H, W) -> (H, W, C), with the colour fix ``method`` (None: none) applied to it made
    8-bit, against ``reference`` (C, H, W) in [0, 1]; the result stays float (before the output's 8-bit rounding)."""
    if sr.shape != reference.shape:
        raise SRError(f"SR image {sr.shape} does not match the upscaled input {reference.shape}")
    if method is not None:
        sr = COLOR_FIXES[method](to_bytes(sr), reference)
    return np.ascontiguousarray(np.clip(sr, 0, 1).transpose(1, 2, 0))
