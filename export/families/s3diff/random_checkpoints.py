"""Random-weight S3Diff checkpoints in the official formats (``s3diff.pkl`` as ``S3Diff.save_model`` writes it,
``de_net.pth`` as a plain DEResNet state dict, SD-Turbo as the SD layer's writer makes it): tiny ones for the tests
and the demo model, full-width ones for benchmarks. The real loaders read them; everything is seeded.

The tiny SD-Turbo's VAE keeps the SD VAE's 32-group norms and two resnets per encoder level, which the
official tiled VAE assumes (it hard-codes both)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from torch import nn

from ...sd.lora import Targets
from ...sd.models import SD_TURBO
from ...sd.random_checkpoints import random_lora_state, write_random_sd
from ..invsr.prompt import POSITIVE_PROMPT as INVSR_PROMPT
from .checkpoint import FILE_NAME, UNET_ADAPTER, VAE_ADAPTER
from .de_net import FILE_NAME as DE_NET_FILE
from .de_net import DEResNet

# The official target lists (S3Diff.__init__), which save_model writes into the checkpoint as they are.
UNET_TARGETS = ["to_k", "to_q", "to_v", "to_out.0", "conv", "conv1", "conv2", "conv_shortcut", "conv_out", "proj_in",
                "proj_out", "ff.net.2", "ff.net.0.proj"]
VAE_TARGETS = r"^encoder\..*(conv1|conv2|conv_in|conv_shortcut|conv|conv_out|to_k|to_q|to_v|to_out\.0)$"
FOURIER_FEATURES = 64  # S3Diff.__init__: num_embeddings
BLOCK_EMBEDDING = 64
DEGRADATION_WIDTH = 256
UNET_BLOCKS, VAE_BLOCKS = 10, 6
SD_TURBO_FOLDER = "sd-turbo"
# size -> (rank_unet, rank_vae): the official ranks for full size
RANKS = {"tiny": (8, 4), "full": (32, 16)}


@dataclass(frozen=True)
class S3DiffFiles:
    sd_turbo: Path
    checkpoint: Path  # s3diff.pkl
    de_net: Path


def _linear_state(inputs: int, outputs: int, prefix: str) -> dict:
    layer = nn.Linear(inputs, outputs)
    return {f"{prefix}weight": layer.weight.detach().clone(), f"{prefix}bias": layer.bias.detach().clone()}


def write_random_checkpoint(path: Path, sd_turbo: Path, seed: int, size: str = "tiny") -> Path:
    """``s3diff.pkl`` for the SD-Turbo folder ``sd_turbo``, with the official entries and key names."""
    rank_unet, rank_vae = RANKS[size]
    unet = UNet2DConditionModel.from_pretrained(sd_turbo, subfolder="unet", low_cpu_mem_usage=False)
    vae = AutoencoderKL.from_pretrained(sd_turbo, subfolder="vae", low_cpu_mem_usage=False)
    torch.manual_seed(seed)
    state_unet = random_lora_state(unet, "", Targets(None, tuple(UNET_TARGETS)), UNET_ADAPTER, rank_unet)
    conv_in = nn.Conv2d(unet.conv_in.in_channels, unet.conv_in.out_channels, unet.conv_in.kernel_size,
                        padding=unet.conv_in.padding)
    state_unet.update({"conv_in.weight": conv_in.weight.detach().clone(), "conv_in.bias": conv_in.bias.detach().clone()})
    checkpoint = {
        "unet_lora_target_modules": UNET_TARGETS,
        "vae_lora_target_modules": VAE_TARGETS,
        "rank_unet": rank_unet,
        "rank_vae": rank_vae,
        "state_dict_unet": state_unet,
        "state_dict_vae": random_lora_state(vae.encoder, "encoder.", Targets(VAE_TARGETS), VAE_ADAPTER, rank_vae),
    }
    for network, rank in (("vae", rank_vae), ("unet", rank_unet)):
        checkpoint[f"state_dict_{network}_de_mlp"] = _linear_state(4 * FOURIER_FEATURES, DEGRADATION_WIDTH, "0.")
        checkpoint[f"state_dict_{network}_block_mlp"] = _linear_state(BLOCK_EMBEDDING, 64, "0.")
        checkpoint[f"state_dict_{network}_fuse_mlp"] = _linear_state(DEGRADATION_WIDTH + 64, rank * rank, "")
    checkpoint["w"] = nn.Parameter(torch.randn(FOURIER_FEATURES), requires_grad=False)  # as save_model stores self.W
    checkpoint["state_embeddings"] = {
        "state_dict_vae_block": {"weight": torch.randn(VAE_BLOCKS, BLOCK_EMBEDDING)},
        "state_dict_unet_block": {"weight": torch.randn(UNET_BLOCKS, BLOCK_EMBEDDING)},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


def write_random_de_net(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(DEResNet().state_dict(), path)
    return path


def write_random_s3diff(folder: Path, seed: int = 0, size: str = "tiny") -> S3DiffFiles:
    """SD-Turbo, ``s3diff.pkl`` and ``de_net.pth`` under ``folder``."""
    folder = Path(folder)
    sd_turbo = write_random_sd(folder / SD_TURBO_FOLDER, SD_TURBO, INVSR_PROMPT, seed=seed,
                               size="tiny-tiled-vae" if size == "tiny" else size)
    return S3DiffFiles(sd_turbo, write_random_checkpoint(folder / FILE_NAME, sd_turbo, seed, size),
                       write_random_de_net(folder / DE_NET_FILE, seed))
