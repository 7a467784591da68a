"""Loading the released ResShift / SinSR denoisers and the VQ-f4 autoencoder, as the official loaders do.

``BaseSampler.load_model``: ``torch.load``, the ``state_dict`` wrapper unwrapped if present; then
``util_net.reload_model``: ``module.`` / ``_orig_mod.`` prefixes allowed, extra keys ignored, every key
of the model required, buffers included (``relative_position_index``, the Swin ``attn_mask``). Here
with ``weights_only=True`` and one-line errors naming the file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from sr_runtime.errors import SRError

from ...checkpoints import load_checkpoint_dict, strip_wrapper_prefixes
from .autoencoder import VQModelTorch
from .config import ResShiftConfig
from .unet import UNetModelSwin


def _first_few(keys: list[str], count: int = 3) -> str:
    shown = ", ".join(keys[:count])
    return shown + (f" and {len(keys) - count} more" if len(keys) > count else "")


def load_into(build: Callable[[], nn.Module], path: str | Path, what: str) -> nn.Module:
    """The module ``build`` makes (from the config), every tensor of its state dict taken from ``path``.

    It is built on the meta device, checked against the file, then given memory: nothing is initialised
    only to be overwritten (118 M parameters at full size), and a wrong file fails at once."""
    state = strip_wrapper_prefixes(load_checkpoint_dict(path), path)
    with torch.device("meta"):
        model = build()
    expected = model.state_dict()
    if missing := [k for k in expected if k not in state]:
        raise SRError(f"checkpoint {path} is not a {what} of this config: it lacks {len(missing)} keys "
                      f"({_first_few(missing)}); another config's checkpoint? pass that config with --config")
    for key, want in expected.items():
        value = state[key]
        if not isinstance(value, torch.Tensor):
            raise SRError(f"checkpoint {path}: {key} is a {type(value).__name__}, not a tensor")
        if value.shape != want.shape:
            raise SRError(f"checkpoint {path}: {key} has shape {tuple(value.shape)}, the config's {what} needs "
                          f"{tuple(want.shape)} (pass the config it was trained with: --config)")
    # Released files may be fp16; the reference and the export start from fp32 (integer buffers stay int).
    model = model.to_empty(device="cpu")
    model.load_state_dict({k: state[k].to(want.dtype) for k, want in expected.items()}, strict=True)
    return model.eval()


def load_denoiser(path: str | Path, config: ResShiftConfig) -> UNetModelSwin:
    return load_into(lambda: UNetModelSwin(config.unet), path, "ResShift denoiser (UNetModelSwin)")


def load_autoencoder(path: str | Path, config: ResShiftConfig) -> VQModelTorch:
    return load_into(lambda: VQModelTorch(config.vq), path, "VQ autoencoder (VQModelTorch)")
