"""The degradation estimator (``DEResNet`` of MM-RealSR, ``src/de_net.py``) as S3Diff builds it: two branches
(blur, noise), each a conv, residual blocks in four stages, global average pooling and a sigmoid MLP. Its
layout is the official default (the inference script builds ``DEResNet(num_in_ch=3, num_degradation=2)``);
``de_net.pth`` is a plain state dict loaded strictly, as ``load_model`` does."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from sr_runtime.errors import SRError

from ...checkpoints import load_checkpoint_dict

FILE_NAME = "de_net.pth"
DEGRADATIONS = 2  # blur, noise
NUM_FEATS = (64, 64, 64, 128)
NUM_BLOCKS = (2, 2, 2, 2)
DOWNSCALES = (1, 1, 2, 1)
HIDDEN = 512


class ResidualBlockNoBN(nn.Module):
    """basicsr's: x + conv2(relu(conv1(x)))."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(torch.relu(self.conv1(x)))


def _branch_body() -> nn.Sequential:
    layers: list[nn.Module] = []
    stages = len(NUM_FEATS)
    for stage in range(stages):
        layers += [ResidualBlockNoBN(NUM_FEATS[stage]) for _ in range(NUM_BLOCKS[stage])]
        following = NUM_FEATS[min(stage + 1, stages - 1)]
        if DOWNSCALES[stage] == 2:
            layers.append(nn.Conv2d(NUM_FEATS[stage], following, 3, 2, 1))
        elif stage < stages - 1 and NUM_FEATS[stage] != following:
            layers.append(nn.Conv2d(NUM_FEATS[stage], following, 3, 1, 1))
    return nn.Sequential(*layers)


class DEResNet(nn.Module):
    """LR (N, 3, h, w) in [0, 1] -> degradation scores (N, 2) in (0, 1)."""

    def __init__(self):
        super().__init__()
        self.conv_first = nn.ModuleList(nn.Conv2d(3, NUM_FEATS[0], 3, 1, 1) for _ in range(DEGRADATIONS))
        self.body = nn.ModuleList(_branch_body() for _ in range(DEGRADATIONS))
        self.fc_degree = nn.ModuleList(
            nn.Sequential(nn.Linear(NUM_FEATS[-1], HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 1), nn.Sigmoid())
            for _ in range(DEGRADATIONS))

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        degrees = []
        for first, body, head in zip(self.conv_first, self.body, self.fc_degree, strict=True):
            features = body(first(lr)).mean(dim=(2, 3))
            degrees.append(head(features).squeeze(-1))
        return torch.stack(degrees, dim=1)


def load_de_net(path: str | Path) -> DEResNet:
    path = Path(path)
    state = load_checkpoint_dict(path)
    network = DEResNet()
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(k for k in state if k not in expected)
    misshaped = sorted(k for k in expected if k in state and (not isinstance(state[k], torch.Tensor)
                                                              or state[k].shape != expected[k].shape))
    for problem, keys in (("lacks", missing), ("has unknown", unexpected), ("has mis-shaped", misshaped)):
        if keys:
            shown = ", ".join(map(str, keys[:3])) + (", ..." if len(keys) > 3 else "")
            raise SRError(f"{path} {problem} DEResNet weights ({shown}); expected the official {FILE_NAME} "
                          "(MM-RealSR's degradation estimator)")
    network.load_state_dict({k: v.float() for k, v in state.items()})
    return network.eval()
