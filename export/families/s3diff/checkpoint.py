"""``s3diff.pkl`` read without executing code: ``torch.load(weights_only=True)`` admits dicts, lists, strings,
numbers and tensors only, and every entry the official ``S3Diff.__init__`` reads is checked for its type
(``src/s3diff_tile.py``; written by ``S3Diff.save_model``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...checkpoints import load_checkpoint_dict
from ...sd.checkpoint_reader import CheckpointReader
from ...sd.lora import Targets

FILE_NAME = "s3diff.pkl"
# The PEFT adapter names the official code creates: ``unet.add_adapter(config)`` and ``adapter_name="vae_skip"``.
UNET_ADAPTER = "default"
VAE_ADAPTER = "vae_skip"
MLPS = ("de_mlp", "block_mlp", "fuse_mlp")


@dataclass(frozen=True)
class Modulation:
    """One network's degradation-to-LoRA mapping: its MLPs and block embeddings (state dicts)."""

    de_mlp: dict[str, torch.Tensor]
    block_mlp: dict[str, torch.Tensor]
    fuse_mlp: dict[str, torch.Tensor]
    block_embeddings: torch.Tensor  # (blocks, embedding dim)


@dataclass(frozen=True)
class S3DiffCheckpoint:
    path: Path
    unet_targets: Targets
    vae_targets: Targets
    rank_unet: int
    rank_vae: int
    unet_state: dict[str, torch.Tensor]  # the UNet's LoRA weights and its retrained conv_in
    vae_state: dict[str, torch.Tensor]  # the VAE encoder's LoRA weights
    w: torch.Tensor  # the Fourier features' frequencies
    unet_modulation: Modulation
    vae_modulation: Modulation


class _Reader(CheckpointReader):
    def modulation(self, network: str, embeddings: dict[Any, Any]) -> Modulation:
        mlps = {name: self.tensors(f"state_dict_{network}_{name}") for name in MLPS}
        table = self.tensors(f"state_dict_{network}_block", embeddings, "state_embeddings ")
        weight = table.get("weight")
        if weight is None or weight.ndim != 2 or len(table) != 1:
            raise self.fail(f"state_embeddings['state_dict_{network}_block'] is not an Embedding state dict")
        return Modulation(**mlps, block_embeddings=weight)


def load_s3diff_checkpoint(path: str | Path) -> S3DiffCheckpoint:
    """The checkpoint's entries, type-checked; their shapes are checked where the networks are built."""
    path = Path(path)
    reader = _Reader(path, load_checkpoint_dict(path), f"an official {FILE_NAME} (S3Diff.save_model)")
    embeddings = reader.get("state_embeddings")
    if not isinstance(embeddings, dict):
        raise reader.fail("'state_embeddings' is not a dict")
    w = reader.get("w")
    if not isinstance(w, torch.Tensor) or w.ndim != 1:
        raise reader.fail(f"'w' is {type(w).__name__}, not a vector of Fourier frequencies")
    return S3DiffCheckpoint(
        path=path,
        unet_targets=reader.targets("unet_lora_target_modules"),
        vae_targets=reader.targets("vae_lora_target_modules"),
        rank_unet=reader.rank("rank_unet"),
        rank_vae=reader.rank("rank_vae"),
        unet_state=reader.tensors("state_dict_unet"),
        vae_state=reader.tensors("state_dict_vae"),
        w=w.detach().float(),
        unet_modulation=reader.modulation("unet", embeddings),
        vae_modulation=reader.modulation("vae", embeddings),
    )
