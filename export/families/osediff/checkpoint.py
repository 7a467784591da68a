"""``osediff.pkl`` (``OSEDiff_gen.save_model``) read without executing code: the LoRA module lists and ranks, the
UNet's LoRA weights with its retrained ``conv_in``, the VAE encoder's LoRA weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ...checkpoints import load_checkpoint_dict
from ...sd.checkpoint_reader import CheckpointReader
from ...sd.lora import Targets

FILE_NAME = "osediff.pkl"
# The PEFT adapters OSEDiff_test.load_ckpt adds, each over the module list the checkpoint names for it.
UNET_ADAPTERS = {"default_encoder": "unet_lora_encoder_modules", "default_decoder": "unet_lora_decoder_modules",
                 "default_others": "unet_lora_others_modules"}
VAE_ADAPTER = "default_encoder"
VAE_MODULES = "vae_lora_encoder_modules"


@dataclass(frozen=True)
class OSEDiffCheckpoint:
    path: Path
    unet_targets: dict[str, Targets]  # adapter name -> the UNet modules it adapts
    vae_targets: Targets
    rank_unet: int
    rank_vae: int
    unet_state: dict[str, torch.Tensor]  # PEFT names: LoRA weights and conv_in's base layer
    vae_state: dict[str, torch.Tensor]


def load_osediff_checkpoint(path: str | Path) -> OSEDiffCheckpoint:
    """The checkpoint's entries, type-checked; their keys and shapes are checked where the LoRA is merged."""
    path = Path(path)
    reader = CheckpointReader(path, load_checkpoint_dict(path), f"an official {FILE_NAME} (OSEDiff_gen.save_model)")
    return OSEDiffCheckpoint(
        path=path,
        unet_targets={adapter: reader.targets(key) for adapter, key in UNET_ADAPTERS.items()},
        vae_targets=reader.targets(VAE_MODULES),
        rank_unet=reader.rank("rank_unet"),
        rank_vae=reader.rank("rank_vae"),
        unet_state=reader.tensors("state_dict_unet"),
        vae_state=reader.tensors("state_dict_vae"),
    )
