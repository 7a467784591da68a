"""What the official inference script does to the images around the networks (``inference_s3diff.py``):
the bilinear x4 and reflect padding before the VAE, the posterior sample, and the colour fix, which it
applies to 8-bit images (``transforms.ToPILImage`` truncates floats to bytes, then ``ToTensor`` divides
by 255)."""

from __future__ import annotations

import numpy as np

from ...color import wavelet_color_fix
from ...errors import SRError
from .section import PAD_MULTIPLE, SCALE

# Reflect padding reaches at most side - 1 px back: the 4x side must exceed the padding to 64.
MIN_SIDE = 9


def _linear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """torch's bilinear (align_corners=False) source indices and weights along one axis, in float32."""
    scale = np.float32(in_size / out_size)
    source = np.maximum(scale * (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5), 0)
    first = source.astype(np.int64)
    second = np.minimum(first + 1, in_size - 1)
    weight = (source - first).astype(np.float32)
    return first, second, np.float32(1) - weight, weight


def bilinear_upscale(lr: np.ndarray) -> np.ndarray:
    """(C, h, w) -> (C, 4h, 4w) float32, as ``F.interpolate(mode='bilinear', align_corners=False)``: the
    width is interpolated first, then the height, each as w0 * a + w1 * b."""
    _, height, width = lr.shape
    x0, x1, wx0, wx1 = _linear_taps(width, SCALE * width)
    rows = lr[:, :, x0] * wx0 + lr[:, :, x1] * wx1
    y0, y1, wy0, wy1 = _linear_taps(height, SCALE * height)
    return rows[:, y0] * wy0[:, None] + rows[:, y1] * wy1[:, None]


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


def _to_bytes(image: np.ndarray) -> np.ndarray:
    """ToPILImage's float -> uint8 (mul(255) and a truncating cast), back as ToTensor gives it."""
    return (image * np.float32(255)).astype(np.uint8).astype(np.float32) / np.float32(255)


def finish(sr: np.ndarray, upscaled: np.ndarray, color_fix: bool) -> np.ndarray:
    """The SR image in [0, 1] (C, 4h, 4w) -> (4h, 4w, C), with the wavelet colour fix against the bilinear x4
    LR applied to both as 8-bit images as the official does; the result stays float (before the output's
    8-bit rounding)."""
    if color_fix:
        sr = wavelet_color_fix(_to_bytes(sr), _to_bytes(upscaled))
    if sr.shape != upscaled.shape:
        raise SRError(f"SR image {sr.shape} does not match the x4 LR {upscaled.shape}")
    return np.ascontiguousarray(np.clip(sr, 0, 1).transpose(1, 2, 0))
