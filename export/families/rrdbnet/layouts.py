"""The release checkpoint layouts of the x4 RRDBNet: each is a ``--model`` value and a file name. Free of
torch: the CLI lists them."""

from __future__ import annotations

REALESRGAN = "realesrgan"
BSRGAN = "bsrgan"
LAYOUTS = (REALESRGAN, BSRGAN)
CHECKPOINT_FILES = {REALESRGAN: "RealESRGAN_x4plus.pth", BSRGAN: "BSRGAN.pth"}
