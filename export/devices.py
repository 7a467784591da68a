"""The torch device a PyTorch reference or benchmark asks for, checked before anything is loaded."""

from __future__ import annotations

from sr_runtime.errors import SRError


def check_torch_device(device: str) -> None:
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SRError("--device cuda asked for, but this torch has no usable CUDA device")
