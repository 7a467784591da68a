"""From the degradation scores to one r x r LoRA matrix per block (``S3Diff.forward``): Fourier features of the
(blur, noise) scores, an MLP embedding them, another embedding each block's id, a linear layer fusing both.

It runs in fp32 in every precision: the Fourier arguments reach tens of radians, where fp16's step is coarse
(bf16 turned this path into NaNs in a published port)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sr_runtime.errors import SRError

from .checkpoint import Modulation


def _linear(state: dict[str, torch.Tensor], prefix: str, source: str, what: str) -> nn.Linear:
    weight, bias = state.get(f"{prefix}weight"), state.get(f"{prefix}bias")
    if set(state) != {f"{prefix}weight", f"{prefix}bias"} or weight.ndim != 2 or bias.shape != weight.shape[:1]:
        raise SRError(f"{source}: {what} is not a Linear layer's state dict ({', '.join(sorted(state))})")
    layer = nn.Linear(weight.shape[1], weight.shape[0])
    layer.weight.data.copy_(weight)
    layer.bias.data.copy_(bias)
    return layer


def _f32(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, layer.weight.float(), layer.bias.float())


class DegradationModulation(nn.Module):
    """deg_score (N, 2) -> matrices (N, blocks, r, r)."""

    def __init__(self, modulation: Modulation, w: torch.Tensor, rank: int, network: str, source: str):
        super().__init__()
        self.rank = rank
        # The official MLPs are Sequential(Linear, ReLU): their Linear sits at index 0.
        self.de_mlp = _linear(modulation.de_mlp, "0.", source, f"state_dict_{network}_de_mlp")
        self.block_mlp = _linear(modulation.block_mlp, "0.", source, f"state_dict_{network}_block_mlp")
        self.fuse_mlp = _linear(modulation.fuse_mlp, "", source, f"state_dict_{network}_fuse_mlp")
        self.w = nn.Parameter(w.clone(), requires_grad=False)
        self.block_embeddings = nn.Parameter(modulation.block_embeddings.clone(), requires_grad=False)
        checks = (
            (self.de_mlp.in_features == 4 * len(w), f"{network} de_mlp takes {self.de_mlp.in_features} features, the "
                                                     f"{len(w)} Fourier frequencies of 'w' give {4 * len(w)}"),
            (self.block_mlp.in_features == self.block_embeddings.shape[1],
             f"{network} block_mlp takes {self.block_mlp.in_features}, the block embeddings are "
             f"{self.block_embeddings.shape[1]} wide"),
            (self.fuse_mlp.in_features == self.de_mlp.out_features + self.block_mlp.out_features,
             f"{network} fuse_mlp takes {self.fuse_mlp.in_features}, the MLPs give "
             f"{self.de_mlp.out_features + self.block_mlp.out_features}"),
            (self.fuse_mlp.out_features == rank * rank,
             f"{network} fuse_mlp gives {self.fuse_mlp.out_features} values per block, rank {rank} needs {rank * rank} "
             "(wrong LoRA rank?)"),
        )
        if problem := next((message for ok, message in checks if not ok), None):
            raise SRError(f"{source}: {problem}")

    @property
    def blocks(self) -> int:
        return self.block_embeddings.shape[0]

    def forward(self, deg_score: torch.Tensor) -> torch.Tensor:
        deg = deg_score.float()
        n = deg.shape[0]
        # The official's order of operations: score * W * 2 * pi.
        angles = deg[..., None] * self.w.float()[None, None, :] * 2 * math.pi
        features = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
        features = torch.cat([features[:, 0], features[:, 1]], dim=-1)
        degradation = F.relu(_f32(self.de_mlp, features))
        blocks = F.relu(_f32(self.block_mlp, self.block_embeddings.float()))
        fused = torch.cat([degradation.unsqueeze(1).repeat(1, blocks.shape[0], 1),
                           blocks.unsqueeze(0).repeat(n, 1, 1)], -1)
        return _f32(self.fuse_mlp, fused).reshape(n, blocks.shape[0], self.rank, self.rank)
