"""Seeded random-weight ResShift / SinSR models in the official file formats, with their official-layout
YAML: the demo model, the tests, the benchmarks and the official-code check all go through the real
loaders with these.

``tiny``: the official architecture with small widths (UNet 32-64 channels, one ResBlock per level, Swin width
32 with 2 heads; autoencoder 32-64 channels, 512 codes); ``full``: the official config itself. The codebook
is drawn at the scale of the latents, so the argmin picks distinct codes (the official initialisation,
uniform in +-1/n_embed, would map every latent to nearly the same point), and the UNet's weights on x_t
are damped (below).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
import yaml

from .autoencoder import VQModelTorch
from .config import load_config
from .official_configs import AUTOENCODER_FILE, JOURNAL, MODELS, ModelSpec
from .unet import UNetModelSwin

TINY_UNET = {"model_channels": 32, "channel_mult": [1, 1, 2, 2], "num_res_blocks": [1, 1, 1, 1], "swin_embed_dim": 32, "num_head_channels": 16,
             "mlp_ratio": 2}
TINY_DDCONFIG = {"ch": 32, "ch_mult": [1, 1, 2], "num_res_blocks": 1}
TINY_CODES = 512
SIZES = ("tiny", "full")
# The journal YAML writes the UNet's out_channels as an interpolation; so do the files written here.
EMBED_DIM_REFERENCE = "${autoencoder.params.embed_dim}"


def official_layout_config(spec: ModelSpec, size: str = "tiny") -> dict[str, Any]:
    """The model's official config (``size`` "full") or its tiny variant, with the keys the official
    samplers read besides the params (``ckpt_path``, ``use_fp16``)."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    config = copy.deepcopy(spec.config)
    config["model"]["ckpt_path"] = None
    config["autoencoder"].update(ckpt_path=f"weights/{AUTOENCODER_FILE}", use_fp16=True)
    if size == "tiny":
        config["model"]["params"].update(TINY_UNET)
        config["autoencoder"]["params"]["ddconfig"].update(TINY_DDCONFIG)
        config["autoencoder"]["params"]["n_embed"] = TINY_CODES
    if spec.config is JOURNAL:
        config["model"]["params"]["out_channels"] = EMBED_DIM_REFERENCE
    return config


# Latents of the random networks spread about this much; a codebook drawn at that scale gets used widely.
CODEBOOK_STD = 0.4
# A trained denoiser predicts x0 mostly from the LR patch; random weights at full strength on x_t make
# the 15-step chain amplify rounding (ONNX Runtime vs PyTorch drift 30x further apart) and flip codes.
LATENT_INPUT_GAIN = 0.1


def _randomise(unet: UNetModelSwin, vq: VQModelTorch, seed: int, latent_channels: int) -> None:
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in unet.modules():
            if hasattr(module, "relative_position_bias_table"):  # the official trunc_normal(0.02) barely matters
                module.relative_position_bias_table.normal_(0.0, 1.0, generator=gen)
        unet.input_blocks[0][0].weight[:, :latent_channels] *= LATENT_INPUT_GAIN
        vq.quantize.embedding.weight.normal_(0.0, CODEBOOK_STD, generator=gen)


def write_official_config(folder: str | Path, model: str, size: str = "tiny") -> Path:
    """``official_layout_config`` as YAML, named as the official file."""
    spec = MODELS[model]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / spec.config_name
    path.write_text(yaml.safe_dump(official_layout_config(spec, size), sort_keys=False))
    return path


def write_random_model(folder: str | Path, model: str, seed: int = 0, size: str = "tiny",
                       wrapper: str | None = None, prefix: str = "") -> tuple[Path, Path, Path]:
    """(denoiser .pth, autoencoder .pth, config .yaml) of ``model`` in ``folder``, named as released.

    The denoiser is a flat state dict (the released EMA weights), or ``{"state_dict": ...}`` beside the
    trainer's bookkeeping (``wrapper="state_dict"``); ``prefix`` ("module.", "_orig_mod.") prefixes its keys
    as DDP / torch.compile do. The autoencoder is a flat state dict.
    """
    spec = MODELS[model]
    config_path = write_official_config(folder, model, size)
    config = load_config(spec, config_path)
    torch.manual_seed(seed)
    unet, vq = UNetModelSwin(config.unet), VQModelTorch(config.vq)
    _randomise(unet, vq, seed, config.vq.embed_dim)
    state = {prefix + k: v for k, v in unet.state_dict().items()}
    if wrapper == "state_dict":
        state = {"iters_start": 1, "log_step": {"train": 1, "val": 1}, "state_dict": state}
    elif wrapper is not None:
        raise ValueError(f"wrapper must be None or 'state_dict', got {wrapper!r}")
    denoiser, autoencoder = config_path.parent / spec.checkpoint, config_path.parent / AUTOENCODER_FILE
    torch.save(state, denoiser)
    torch.save(vq.state_dict(), autoencoder)
    return denoiser, autoencoder, config_path

