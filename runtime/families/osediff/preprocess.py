"""What ``test_osediff.py`` does to an image around the networks: Pillow's resizes before (an LR under 128 px
enlarged, then x4, then cut to multiples of 8), the tagger's 384 x 384 input (torchvision's tensor ``Resize``:
bilinear, not antialiased in the official's torchvision 0.15), and the VAE's [-1, 1] input."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ...errors import SRError
from ...resize import resize_bilinear
from .section import MIN_LR_SIDE, SCALE, SIZE_MULTIPLE, TAGGER_SIZE


def upscaled_size(height: int, width: int) -> tuple[int, int]:
    """The (height, width) of the x4 image the official makes of an LR of ``height`` x ``width`` px."""
    if min(height, width) < MIN_LR_SIDE:
        scale = MIN_LR_SIDE / min(width, height)
        height, width = int(scale * height), int(scale * width)
    height, width = SCALE * height, SCALE * width
    return height - height % SIZE_MULTIPLE, width - width % SIZE_MULTIPLE


def upscale(lr: np.ndarray) -> np.ndarray:
    """(h, w, 3) in [0, 1] -> the x4 image (3, H, W) float32 in [0, 1], 8-bit values, as the official makes it
    with Pillow: bicubic (Image.resize's default) to a short side of 128 px where it is shorter, bicubic x4, then
    LANCZOS down to multiples of 8 px. The LR is taken as 8-bit, as the official reads it."""
    height, width = lr.shape[:2]
    if min(height, width) < 1:
        raise SRError(f"a {width}x{height} image has no pixels")
    image = Image.fromarray(np.round(np.clip(lr, 0, 1) * 255).astype(np.uint8), "RGB")
    if min(height, width) < MIN_LR_SIDE:
        scale = MIN_LR_SIDE / min(width, height)
        image = image.resize((int(scale * width), int(scale * height)), Image.Resampling.BICUBIC)
    image = image.resize((image.width * SCALE, image.height * SCALE), Image.Resampling.BICUBIC)
    image = image.resize((image.width - image.width % SIZE_MULTIPLE, image.height - image.height % SIZE_MULTIPLE),
                         Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / np.float32(255)


def tagger_input(upscaled: np.ndarray) -> np.ndarray:
    """(3, H, W) -> (1, 3, 384, 384): what RAM sees (the graph normalises it)."""
    return resize_bilinear(upscaled, TAGGER_SIZE, TAGGER_SIZE)[None]


def vae_input(upscaled: np.ndarray) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (1, 3, H, W) in [-1, 1] (``lq * 2 - 1``)."""
    return (upscaled * np.float32(2) - np.float32(1))[None]
