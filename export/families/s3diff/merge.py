"""The static merge S3Diff does not allow: the modulated LoRA folded into the base weights at one fixed degradation.

Each layer's delta is scale * (B M^T) A with its block's matrix M at that degradation, so the merged network
equals the live one for images of exactly that degradation and drifts for others; ``merge_bench`` measures
how far, and what the live modulation costs in time."""

from __future__ import annotations

import copy

import torch
from torch import nn

from sr_runtime.families.s3diff import graphs as io
from sr_runtime.graph_io import GraphIO

from ...graph_spec import GraphSpec
from ...sd.lora import lora_delta
from .lora import ModulatedLoRA
from .stages import UNetStage


def merged(network: nn.Module, matrices: torch.Tensor) -> nn.Module:
    """A copy of ``network`` with every ModulatedLoRA folded into its base layer; ``matrices`` (blocks, r, r)."""
    network = copy.deepcopy(network)
    for name, module in list(network.named_modules()):
        if not isinstance(module, ModulatedLoRA):
            continue
        m = matrices[module.block]
        down, up = module.down.weight, module.up.weight.flatten(1)  # B: (out, r)
        mixed = up @ m.T  # (out, r): B M^T
        delta = lora_delta(mixed, down) * module.scale
        module.base.weight.data += delta.reshape(module.base.weight.shape)
        parent_name, _, child = name.rpartition(".")
        setattr(network.get_submodule(parent_name) if parent_name else network, child, module.base)
    return network


class MergedUNetStage(nn.Module):
    """UNetStage with the LoRA merged at one degradation: latent, prompt embeds -> guided eps (no deg_score)."""

    def __init__(self, live: UNetStage, deg_score: torch.Tensor):
        super().__init__()
        with torch.no_grad():
            matrices = live.modulation(deg_score)[0]
        self.stage = UNetStage(merged(live.unet, matrices), live.modulation, live.context, live.timestep)
        self.deg_score = deg_score

    def forward(self, latent: torch.Tensor, prompt_embeds: torch.Tensor) -> torch.Tensor:
        # The merged UNet has no LoRA layers left: the modulation the stage computes reaches nothing.
        return self.stage(latent, self.deg_score.expand(latent.shape[0], -1), prompt_embeds)


def merged_graph_spec(deg_score: torch.Tensor) -> GraphSpec:
    """The UNet graph merged at ``deg_score`` (1, 2): latent, prompt embeds -> guided eps."""
    unet = GraphIO("unet_merged", (io.UNET.inputs[0], io.PROMPT_EMBEDS), io.UNET.outputs, io.FIXED_DIMS)
    return GraphSpec(unet, lambda c: MergedUNetStage(UNetStage.of(c), deg_score),
                     "latent, prompt embeds -> the UNet with the LoRA merged at one degradation -> guided eps")
