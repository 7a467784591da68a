"""S3Diff's degradation-modulated LoRA (``my_lora_fwd`` in ``src/model.py``): each adapted layer computes
``W x + B(M^T-mix of A x) * scale`` with its block's r x r matrix M of the current image, so the LoRA cannot
be merged into W once for all images. Layers are chosen with PEFT's target rule from the checkpoint's target
list and read the PEFT weights (``<layer>.lora_A.<adapter>.weight``, ``lora_B``); the scale is PEFT's
``lora_alpha / r`` with the ``LoraConfig`` default alpha 8 (the checkpoint stores no alpha)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from sr_runtime.errors import SRError

from ...sd.lora import PEFT_LORA_ALPHA, Targets, lora_layers, weight_keys


class ModulationContext:
    """The current batch's modulation matrices (N, blocks, r, r), set before a forward pass; the LoRA layers of
    one network read their block's matrix from it."""

    def __init__(self):
        self.matrices: torch.Tensor | None = None

    def __deepcopy__(self, memo: dict) -> ModulationContext:
        # The matrices belong to one forward pass: a copied network starts without them (all its layers still
        # share the one new context, through deepcopy's memo).
        return ModulationContext()


class ModulatedLoRA(nn.Module):
    def __init__(self, base: nn.Module, down: nn.Module, up: nn.Module, rank: int, block: int,
                 context: ModulationContext):
        super().__init__()
        self.base = base
        self.down = down
        self.up = up
        self.scale = PEFT_LORA_ALPHA / rank
        self.block = block
        self.context = context

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        result = self.base(x, *args, **kwargs)
        h = self.down(x)
        m = self.context.matrices[:, self.block].to(h.dtype)  # (N, r, r): h'_j = sum_k h_k M[k, j]
        if h.ndim == 4:  # a convolution: mixed per pixel
            n, r, height, width = h.shape
            h = torch.matmul(m.transpose(1, 2), h.reshape(n, r, height * width)).reshape(n, r, height, width)
        else:  # a linear layer on (N, tokens, features)
            h = torch.matmul(h, m)
        return result + self.up(h) * self.scale


@dataclass(frozen=True)
class Adapter:
    name: str  # the PEFT adapter name in the weight keys
    rank: int
    targets: Targets
    block_of: Callable[[str], int]  # layer name -> index into the network's block embeddings (may be negative)


def inject_lora(network: nn.Module, prefix: str, state: dict[str, torch.Tensor], adapter: Adapter, blocks: int,
                context: ModulationContext, source: str) -> int:
    """Wraps every layer of ``network`` whose name (``prefix`` + its name in ``network``) the targets match;
    consumes its weights from ``state`` (keys without the adapter name). Returns how many layers it adapted."""
    matched = [(name, module) for name, module in network.named_modules() if adapter.targets.match(prefix + name)]
    for name, base in matched:
        block = adapter.block_of(prefix + name)
        if not -blocks <= block < blocks:
            raise SRError(f"{source}: layer {prefix + name} belongs to block {block}, the checkpoint embeds {blocks}")
        down, up = lora_layers(base, prefix + name, state, adapter.rank, source)
        for key in weight_keys(prefix + name):
            del state[key]
        parent_name, _, child = name.rpartition(".")
        parent = network.get_submodule(parent_name) if parent_name else network
        setattr(parent, child, ModulatedLoRA(base, down, up, adapter.rank, block % blocks, context))
    return len(matched)


def unet_block(name: str) -> int:
    """S3Diff.forward: down_blocks.i -> i, mid_block -> 4, up_blocks.i -> 5 + i, anything else (conv_out) -> the last."""
    parts = name.split(".")
    if parts[0] == "down_blocks":
        return int(parts[1])
    if parts[0] == "mid_block":
        return 4
    if parts[0] == "up_blocks":
        return int(parts[1]) + 5
    return -1


def vae_block(name: str) -> int:
    """S3Diff.forward: encoder.down_blocks.i -> i, encoder.mid_block -> the one before last, the rest -> the last."""
    parts = name.split(".")
    if parts[1] == "down_blocks":
        return int(parts[2])
    if parts[1] == "mid_block":
        return -2
    return -1
