"""torch's bilinear resize (what official scripts call through ``F.interpolate`` or torchvision's tensor
``Resize``), in numpy: the runtime reproduces it without torch."""

from __future__ import annotations

import numpy as np


def _linear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """torch's bilinear (align_corners=False) source indices and weights along one axis, in float32; the source
    position is rounded once from an exact product, as torch's fused multiply-add computes it."""
    scale = np.float32(in_size / out_size)
    exact = np.float64(scale) * (np.arange(out_size) + 0.5) - 0.5
    source = np.maximum(exact.astype(np.float32), np.float32(0))
    first = source.astype(np.int64)
    second = np.minimum(first + 1, in_size - 1)
    weight = (source - first).astype(np.float32)
    return first, second, np.float32(1) - weight, weight


ROWS_PER_BLEND = 64  # rows blended at a time: the exact products are float64, kept small


def _blend(source: np.ndarray, first, second, w_first, w_second, axis: int, size: int) -> np.ndarray:
    """Along ``axis`` of (C, H, W): w_first * source[first] + w_second * source[second] as torch's kernel computes it,
    fma(w_first, a, w_second * b): one rounding after the exact product."""
    shape = list(source.shape)
    shape[axis] = size
    out = np.empty(shape, np.float32)
    for start in range(0, source.shape[1] if axis == 2 else size, ROWS_PER_BLEND):
        rows = slice(start, start + ROWS_PER_BLEND)
        if axis == 2:
            a, b, wa, wb = source[:, rows][:, :, first], source[:, rows][:, :, second], w_first, w_second
        else:
            a, b = source[:, first[rows]], source[:, second[rows]]
            wa, wb = w_first[rows, None], w_second[rows, None]
        out[:, rows] = a.astype(np.float64) * wa + (b * wb)
    return out


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """(C, h, w) -> (C, height, width) float32, as torch's ``F.interpolate(mode='bilinear', align_corners=False)``
    without antialiasing (bit for bit on the CPU): the width first, then the height."""
    _, in_height, in_width = image.shape
    image = image.astype(np.float32, copy=False)
    rows = _blend(image, *_linear_taps(in_width, width), axis=2, size=width)
    return _blend(rows, *_linear_taps(in_height, height), axis=1, size=height)
