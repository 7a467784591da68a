"""What the official inference script does to the images around the networks (``inference_s3diff.py``):
the bilinear x4 and reflect padding before the VAE, the posterior sample, and the colour fix, which it
applies to 8-bit images (``transforms.ToPILImage`` truncates floats to bytes, then ``ToTensor`` divides
by 255)."""

from __future__ import annotations

import numpy as np

from ...errors import SRError
from ...resize import resize_bilinear
from .section import PAD_MULTIPLE, SCALE

# Reflect padding reaches at most side - 1 px back: the 4x side must exceed the padding to 64.
MIN_SIDE = 9


def bilinear_upscale(lr: np.ndarray) -> np.ndarray:
    """(C, h, w) -> (C, 4h, 4w) float32, as the official ``F.interpolate(scale_factor=4, mode='bilinear')``."""
    _, height, width = lr.shape
    return resize_bilinear(lr, SCALE * height, SCALE * width)


def check_size(height: int, width: int) -> None:
    if min(height, width) < MIN_SIDE:
        raise SRError(f"{width}x{height} is too small for S3Diff: each side needs at least {MIN_SIDE} px (the "
                      f"official reflect padding of the x{SCALE} image to multiples of {PAD_MULTIPLE})")


def padded_size(size: int) -> int:
    return -(-SCALE * size // PAD_MULTIPLE) * PAD_MULTIPLE


def vae_input(upscaled: np.ndarray) -> np.ndarray:
    """The x4 image in [0, 1] -> [-1, 1], clamped, reflect-padded bottom / right to multiples of 64."""
    _, height, width = upscaled.shape
    image = np.clip(upscaled * np.float32(2) - np.float32(1), -1, 1)
    pad_h, pad_w = -height % PAD_MULTIPLE, -width % PAD_MULTIPLE
    return np.pad(image, ((0, 0), (0, pad_h), (0, pad_w)), mode="reflect")[None]
