"""The official colour fixes, in numpy: InvSR's ``--color_fix wavelet|ycbcr`` (``utils/util_color_fix.py``), and the
wavelet and AdaIN fixes of the one-step SD families (``my_utils/wavelet_color_fix.py``).

InvSR takes the colours (low frequencies, or chroma) from the LR image resized to the SR size with PyTorch's
antialiased bicubic, and keeps the detail (high frequencies, or luma) of the SR; AdaIN gives each channel of the
SR the mean and standard deviation of the reference's. All images are (C, H, W) float32.
"""

from __future__ import annotations

import numpy as np

from .errors import SRError

COLOR_FIX_METHODS = ("wavelet", "ycbcr", "adain")  # each family runs those of its official code
INVSR_METHODS = ("wavelet", "ycbcr")  # InvSR's --color_fix, which apply_color_fix runs
_ADAIN_EPS = 1e-5  # calc_mean_std: added to the (unbiased) variance
NO_COLOR_FIX = "none"  # said explicitly, for models whose default is a colour fix

_CUBIC_A = -0.5  # the antialiased kernel's coefficient (PIL's), not the -0.75 of plain bicubic
_WAVELET_LEVELS = 5

# MATLAB rgb2ycbcr / ycbcr2rgb (BT.601 studio swing) on 0-255 values; rows are input channels.
_RGB_TO_YCBCR = (np.array(
    [[65.481, -37.797, 112.0], [128.553, -74.203, -93.786], [24.966, 112.0, -18.214]]
) / 255.0).astype(np.float32)
_YCBCR_OFFSET = np.array([16.0, 128.0, 128.0], dtype=np.float32)
_YCBCR_TO_RGB = (np.array(
    [[0.00456621, 0.00456621, 0.00456621], [0.0, -0.00153632, 0.00791071], [0.00625893, -0.00318811, 0.0]]
) * 255.0).astype(np.float32)
_RGB_OFFSET = np.array([-222.921, 135.576, -276.836], dtype=np.float32)

def _cubic(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    a = _CUBIC_A
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def _antialias_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) float32 resampling matrix of torch's ``_upsample_bicubic2d_aa``.

    When shrinking, the kernel is stretched by the scale (that is the antialiasing); taps are clipped
    at the borders and the remaining weights renormalised, as PIL does.
    """
    # torch computes positions and weights in the image dtype; float64 here would drift ~1e-5 away
    # from it at the far end of large upscales (the float32 rounding of the scale grows with the index).
    f32 = np.float32
    scale = f32(in_size) / f32(out_size)
    stretch = max(scale, f32(1.0))
    support = f32(2.0) * stretch
    centres = scale * (np.arange(out_size, dtype=f32) + f32(0.5))
    # torch casts to int64 here, i.e. truncates toward zero.
    first = np.maximum(np.trunc(centres - support + f32(0.5)), 0).astype(np.int64)
    stop = np.minimum(np.trunc(centres + support + f32(0.5)).astype(np.int64), in_size)
    index = first[:, None] + np.arange(int((stop - first).max()))
    weight = _cubic((index.astype(f32) - centres[:, None] + f32(0.5)) / stretch).astype(f32)
    weight[index >= stop[:, None]] = 0.0
    total = weight.sum(axis=1, keepdims=True)
    weight = np.divide(weight, total, out=np.zeros_like(weight), where=total != 0)
    # A dense matrix lets BLAS do the resampling; it is far smaller than the image it resizes.
    matrix = np.zeros((out_size, in_size), dtype=f32)
    rows = np.broadcast_to(np.arange(out_size)[:, None], index.shape)
    np.add.at(matrix, (rows, np.minimum(index, in_size - 1)), weight)  # clipped taps carry weight 0
    return matrix


def resize_bicubic_antialias(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """(C, H, W) -> (C, out_h, out_w) float32, as ``F.interpolate(mode='bicubic', antialias=True)``."""
    if img.ndim != 3 or min(img.shape[1:]) < 1:
        raise SRError(f"image to resize must have shape (C, H, W), got {img.shape}")
    if out_h < 1 or out_w < 1:
        raise SRError(f"resize target must be at least 1x1, got {out_w}x{out_h}")
    _, height, width = img.shape
    wide = img.astype(np.float32) @ _antialias_matrix(width, out_w).T
    return _antialias_matrix(height, out_h) @ wide


def _window(array: np.ndarray, axis: int, start: int, size: int) -> np.ndarray:
    index = [slice(None)] * array.ndim
    index[axis] = slice(start, start + size)
    return array[tuple(index)]


def _binomial_pass(padded: np.ndarray, axis: int, radius: int, size: int) -> np.ndarray:
    """[1, 2, 1] / 4 with taps ``radius`` apart along ``axis`` of an array padded by ``radius``."""
    result = _window(padded, axis, 0, size) + _window(padded, axis, 2 * radius, size)
    result *= 0.25
    result += 0.5 * _window(padded, axis, radius, size)
    return result


def _wavelet_blur(image: np.ndarray, radius: int) -> np.ndarray:
    # The 3x3 binomial kernel is separable and replicate padding commutes with a row blur, so a
    # row pass over the padded image then a column pass equals the official dilated 2-D convolution.
    padded = np.pad(image, ((0, 0), (radius, radius), (radius, radius)), mode="edge")
    rows = _binomial_pass(padded, 2, radius, image.shape[2])
    return _binomial_pass(rows, 1, radius, image.shape[1])


def _wavelet_split(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(high, low): the a-trous decomposition with dilations 1, 2, 4, 8, 16."""
    high = np.zeros_like(image)
    for level in range(_WAVELET_LEVELS):
        low = _wavelet_blur(image, 2**level)
        high += image - low
        image = low
    return high, image


def _check_pair(sr: np.ndarray, reference: np.ndarray, channels: int | None = None) -> None:
    if sr.ndim != 3 or sr.shape != reference.shape:
        raise SRError(f"colour fix needs two (C, H, W) images of equal shape, got {sr.shape} and {reference.shape}")
    if channels is not None and sr.shape[0] != channels:
        raise SRError(f"colour fix needs {channels}-channel images, got {sr.shape[0]} channels")


def wavelet_color_fix(sr: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """High frequencies of ``sr`` plus low frequencies of ``reference`` (official wavelet_reconstruction)."""
    _check_pair(sr, reference)
    # float32 like the official (and half the memory: the cascade keeps several full-size copies).
    sr_high, _ = _wavelet_split(sr.astype(np.float32))
    _, reference_low = _wavelet_split(reference.astype(np.float32))
    return sr_high + reference_low


def adain_color_fix(sr: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each channel of ``sr`` moved to the mean and standard deviation of ``reference``'s (the official
    adaptive_instance_normalization), clamped to [0, 1]."""
    _check_pair(sr, reference)

    def mean_std(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        flat = image.astype(np.float32).reshape(image.shape[0], -1)
        return flat.mean(axis=1)[:, None, None], np.sqrt(flat.var(axis=1, ddof=1) + np.float32(_ADAIN_EPS))[:, None, None]

    sr_mean, sr_std = mean_std(sr)
    reference_mean, reference_std = mean_std(reference)
    return np.clip((sr - sr_mean) / sr_std * reference_std + reference_mean, 0.0, 1.0).astype(np.float32)


def _colour_transform(image: np.ndarray, matrix: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """The official conversions: to 0-255, times ``matrix`` plus ``offset``, back to 0-1, clamped."""
    flat = 255.0 * image.reshape(3, -1)
    converted = matrix.T @ flat + offset[:, None]
    converted /= 255.0
    return np.clip(converted, 0.0, 1.0, out=converted).reshape(image.shape)


def ycbcr_color_fix(sr: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Luma of ``sr`` with the chroma of ``reference`` (official ycbcr_color_replace)."""
    _check_pair(sr, reference, channels=3)
    luma = _colour_transform(sr.astype(np.float32), _RGB_TO_YCBCR, _YCBCR_OFFSET)[:1]
    chroma = _colour_transform(reference.astype(np.float32), _RGB_TO_YCBCR, _YCBCR_OFFSET)[1:]
    return _colour_transform(np.concatenate([luma, chroma]), _YCBCR_TO_RGB, _RGB_OFFSET)


def color_fix_method(method: str | None, known: tuple[str, ...] = COLOR_FIX_METHODS) -> str | None:
    """The colour fix to apply, None for none; a name not ``known`` is refused."""
    if method is None or method == NO_COLOR_FIX:
        return None
    if method not in known:
        raise SRError(f"unknown colour fix {method!r}; choose one of: {', '.join((*known, NO_COLOR_FIX))}")
    return method


def apply_color_fix(sr: np.ndarray, padded_lr: np.ndarray, method: str | None) -> np.ndarray:
    """The official colour-fix step on the cropped SR; ``method`` None leaves ``sr`` as it is.

    The reference is the *padded* LR resized to the *cropped* SR size. Whenever padding happened this
    squeezes a larger field of view into the frame, so colours are taken from slightly misaligned
    places. That is what the official sampler does, and we reproduce it on purpose so outputs match.
    """
    method = color_fix_method(method, INVSR_METHODS)
    sr = np.asarray(sr, dtype=np.float32)
    if method is None:
        return sr
    if padded_lr.ndim != 3:
        raise SRError(f"LR image must have shape (C, H, W), got {padded_lr.shape}")
    reference = resize_bicubic_antialias(padded_lr, sr.shape[-2], sr.shape[-1])
    if method == "wavelet":
        return wavelet_color_fix(sr, reference)
    return ycbcr_color_fix(sr, reference)
