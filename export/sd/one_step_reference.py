"""What the PyTorch references of the one-step SD families share: their fp32 modules on one device, numpy arrays in
and out as the runtime's image loop passes them, the decoder and the official tiled VAE's segments."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch


class OneStepReference:
    """A subclass sets ``decoder`` (latent, eps -> image) and ``segments`` (kind -> the segment modules)."""

    decoder: torch.nn.Module
    segments: dict[str, list[torch.nn.Module]]

    def __init__(self, modules: Iterable[torch.nn.Module], device: str = "cpu", batch: int = 1):
        self.device = torch.device(device)
        self.batch = batch  # latent tiles per UNet call (the official runs one)
        if self.device.type != "cpu":  # the loaders load fp32 on the CPU
            for module in modules:
                module.to(self.device)

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).to(self.device)

    @staticmethod
    def _array(tensor: torch.Tensor) -> np.ndarray:
        return tensor.float().cpu().numpy()

    @torch.inference_mode()
    def decode(self, latent: np.ndarray, eps: np.ndarray) -> np.ndarray:
        return self._array(self.decoder(self._tensor(latent), self._tensor(eps)))

    @torch.inference_mode()
    def segment(self, kind: str, index: int, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        module = self.segments[kind][index]
        return self._array(module(*(self._tensor(inputs[name]) for name in module.input_names)))
