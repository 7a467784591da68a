"""The PyTorch reference of Real-ESRGAN and BSRGAN: the network on the whole image, as both official
inference scripts run it (Real-ESRGAN's default ``--tile 0``; BSRGAN's ``main_test_bsrgan.py``)."""

from __future__ import annotations

import numpy as np
import torch

from sr_runtime.checks import check_rgb_image
from sr_runtime.crop_tiling import BYTES_PER_SR_PIXEL
from sr_runtime.families.rrdbnet.graphs import SCALE
from sr_runtime.family import TileProgress
from sr_runtime.resources import ImageCost

from .model import RRDBNet


class RRDBNetReference:
    def __init__(self, model: RRDBNet, device: str = "cpu", dtype: torch.dtype = torch.float32):
        self.device = torch.device(device)
        self.dtype = dtype
        self.model = model.to(self.device, dtype).eval()

    def cost(self, height: int, width: int) -> ImageCost:
        """The image buffers, and about two feature maps of the network at the output resolution (the
        upsampling convs' inputs and outputs): a whole-image run holds far more than a tiled one."""
        feature_bytes = 2 * self.model.config.num_feat * torch.finfo(self.dtype).bits // 8
        return ImageCost((BYTES_PER_SR_PIXEL + feature_bytes) * SCALE * height * SCALE * width, 1)

    @torch.inference_mode()
    def upscale(self, image: np.ndarray, on_tiles_done: TileProgress | None = None) -> np.ndarray:
        """(H,W,3) float32 in [0,1] -> (4H,4W,3) float32 in [0,1]."""
        check_rgb_image(image)
        lr = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].to(self.device, self.dtype)
        sr = self.model(lr)[0].float().clamp(0, 1).cpu().numpy()
        if on_tiles_done is not None:
            on_tiles_done(1, 1)
        return sr.transpose(1, 2, 0).copy()
