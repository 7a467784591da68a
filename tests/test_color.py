"""Colour fix against torch: F.interpolate itself, and the spec's wavelet / YCbCr math written in torch."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sr_runtime.color import apply_color_fix, resize_bicubic_antialias, wavelet_color_fix, ycbcr_color_fix
from sr_runtime.errors import SRError

RESIZE_TOLERANCE = 1e-5  # max abs difference to torch; measured ~1e-6 (float32 rounding order)
FIX_TOLERANCE = 1e-5


def torch_resize(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    x = torch.from_numpy(img)[None]
    return F.interpolate(x, size=(out_h, out_w), mode="bicubic", align_corners=False, antialias=True)[0].numpy()


def torch_low_pass(x: torch.Tensor) -> torch.Tensor:
    """L5 of invsr-inference.md 4.6: five cascaded binomial blurs, dilation 2^i, replicate padding."""
    kernel = torch.tensor([1.0, 2.0, 1.0])
    kernel = (kernel[:, None] * kernel[None, :] / 16).expand(3, 1, 3, 3)
    for i in range(5):
        r = 2**i
        x = F.conv2d(F.pad(x, (r, r, r, r), mode="replicate"), kernel, groups=3, dilation=r)
    return x


def torch_wavelet(sr: np.ndarray, ref: np.ndarray) -> np.ndarray:
    s, r = torch.from_numpy(sr)[None], torch.from_numpy(ref)[None]
    return (s - torch_low_pass(s) + torch_low_pass(r))[0].numpy()


def torch_ycbcr(sr: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Y from sr, Cb/Cr from ref, MATLAB BT.601 studio swing, each conversion clamped to [0, 1]."""
    R, G, B = (255 * torch.from_numpy(sr).double()).unbind(0)
    y = ((65.481 * R + 128.553 * G + 24.966 * B) / 255 + 16) / 255
    R, G, B = (255 * torch.from_numpy(ref).double()).unbind(0)
    cb = ((-37.797 * R - 74.203 * G + 112.0 * B) / 255 + 128) / 255
    cr = ((112.0 * R - 93.786 * G - 18.214 * B) / 255 + 128) / 255
    Y, Cb, Cr = (255 * torch.stack([y, cb, cr]).clamp(0, 1)).unbind(0)
    red = 255 * (0.00456621 * Y + 0.00625893 * Cr) - 222.921
    green = 255 * (0.00456621 * Y - 0.00153632 * Cb - 0.00318811 * Cr) + 135.576
    blue = 255 * (0.00456621 * Y + 0.00791071 * Cb) - 276.836
    return (torch.stack([red, green, blue]) / 255).clamp(0, 1).float().numpy()


def random_image(seed: int, height: int, width: int, low: float = 0.0, high: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, (3, height, width)).astype(np.float32)


@pytest.mark.parametrize(
    ("in_hw", "out_hw"),
    [
        ((7, 9), (28, 36)),  # x4 up
        ((128, 128), (200, 280)),  # non-integer up, long enough for float32 position drift
        ((50, 70), (13, 17)),  # down
        ((300, 200), (100, 50)),  # integer down (taps landing exactly on the support edge)
        ((33, 20), (100, 7)),  # up one way, down the other
        ((16, 16), (16, 16)),
        ((5, 3), (1, 1)),
        ((1, 1), (4, 4)),
    ],
)
def test_resize_matches_torch_antialias(in_hw, out_hw):
    img = random_image(sum(in_hw) + sum(out_hw), *in_hw)
    ours = resize_bicubic_antialias(img, *out_hw)
    assert ours.dtype == np.float32 and ours.shape == (3, *out_hw)
    assert np.abs(ours - torch_resize(img, *out_hw)).max() <= RESIZE_TOLERANCE


def test_resize_differs_from_plain_bicubic():
    # Guards against the a=-0.75, non-antialiased kernel (what the pipeline's own upsampling uses).
    img = random_image(0, 40, 40)
    plain = F.interpolate(torch.from_numpy(img)[None], size=(10, 10), mode="bicubic", align_corners=False)[0]
    assert np.abs(resize_bicubic_antialias(img, 10, 10) - plain.numpy()).max() > 1e-2


def test_resize_rejects_bad_sizes():
    with pytest.raises(SRError):
        resize_bicubic_antialias(np.zeros((3, 4, 4), np.float32), 0, 4)
    with pytest.raises(SRError):
        resize_bicubic_antialias(np.zeros((4, 4), np.float32), 8, 8)


@pytest.mark.parametrize(("height", "width"), [(64, 80), (37, 53), (10, 12)])  # (10, 12): padding > side
def test_wavelet_matches_spec_math(height, width):
    sr = random_image(1, height, width)
    ref = random_image(2, height, width, -0.1, 1.1)
    ours = wavelet_color_fix(sr, ref)
    assert ours.dtype == np.float32
    assert np.abs(ours - torch_wavelet(sr, ref)).max() <= FIX_TOLERANCE


def test_wavelet_takes_colour_from_reference():
    sr = random_image(3, 64, 64)
    shifted = wavelet_color_fix(sr, sr + np.float32(0.2))  # a flat shift is all low frequency
    np.testing.assert_allclose(shifted, sr + 0.2, atol=1e-5)


@pytest.mark.parametrize(("height", "width"), [(32, 48), (7, 5)])
def test_ycbcr_matches_spec_math(height, width):
    sr = random_image(4, height, width)
    ref = random_image(5, height, width, -0.1, 1.1)
    ours = ycbcr_color_fix(sr, ref)
    assert ours.dtype == np.float32
    assert np.abs(ours - torch_ycbcr(sr, ref)).max() <= FIX_TOLERANCE
    assert ours.min() == 0.0 and ours.max() == 1.0  # random colours leave the gamut: clamps were exercised


def test_fixes_reject_mismatched_shapes():
    with pytest.raises(SRError):
        wavelet_color_fix(np.zeros((3, 8, 8), np.float32), np.zeros((3, 8, 9), np.float32))
    with pytest.raises(SRError):
        ycbcr_color_fix(np.zeros((1, 8, 8), np.float32), np.zeros((1, 8, 8), np.float32))


@pytest.mark.parametrize("method", ["wavelet", "ycbcr"])
def test_apply_uses_padded_lr_resized_to_cropped_sr(method):
    # A 100 x 200 LR is padded to 128 x 208; the SR is cropped to 400 x 800 but the reference is the
    # whole padded LR squeezed into 400 x 800, as the official sampler does.
    padded_lr = random_image(6, 128, 208)
    sr = random_image(7, 400, 800)
    reference = torch_resize(padded_lr, 400, 800)
    oracle = torch_wavelet if method == "wavelet" else torch_ycbcr
    ours = apply_color_fix(sr, padded_lr, method)
    assert ours.dtype == np.float32 and ours.shape == sr.shape
    assert np.abs(ours - oracle(sr, reference)).max() <= FIX_TOLERANCE


def test_apply_without_method_returns_sr_unchanged():
    sr = random_image(8, 16, 16, -0.2, 1.2)  # no clamp here: the caller clamps
    np.testing.assert_array_equal(apply_color_fix(sr, random_image(9, 4, 4), None), sr)


def test_none_said_explicitly_leaves_sr_unchanged():
    sr = random_image(8, 16, 16)
    np.testing.assert_array_equal(apply_color_fix(sr, random_image(9, 4, 4), "none"), sr)


@pytest.mark.parametrize("method", ["None", "adain", "Wavelet", ""])
def test_apply_rejects_unknown_method(method):
    with pytest.raises(SRError) as err:
        apply_color_fix(random_image(8, 16, 16), random_image(9, 4, 4), method)
    assert "\n" not in str(err.value)


def test_adain_is_the_official_adaptive_instance_normalization():
    from sr_runtime.color import adain_color_fix

    sr, reference = random_image(3, 20, 24), random_image(5, 20, 24)
    target, source = torch.from_numpy(sr)[None], torch.from_numpy(reference)[None]

    def mean_std(feat):  # calc_mean_std: unbiased variance + 1e-5
        flat = feat.reshape(1, 3, -1)
        return flat.mean(dim=2).reshape(1, 3, 1, 1), (flat.var(dim=2) + 1e-5).sqrt().reshape(1, 3, 1, 1)

    (t_mean, t_std), (s_mean, s_std) = mean_std(target), mean_std(source)
    want = ((target - t_mean) / t_std * s_std + s_mean).clamp(0, 1)[0].numpy()
    np.testing.assert_allclose(adain_color_fix(sr, reference), want, atol=2e-6)


@pytest.mark.parametrize(("size", "out"), [((20, 28), (80, 112)), ((200, 328), (384, 384)), ((512, 640), (384, 384))])
def test_the_bilinear_resize_is_torchs_bit_for_bit(size, out):
    from sr_runtime.resize import resize_bilinear

    image = random_image(7, *size)
    want = torch.nn.functional.interpolate(torch.from_numpy(image)[None], out, mode="bilinear", align_corners=False)
    # torch fuses the blend's multiply-add where the CPU can; elsewhere the last bit may differ.
    np.testing.assert_allclose(resize_bilinear(image, *out), want[0].numpy(), rtol=0, atol=2e-7)
