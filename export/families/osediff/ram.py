"""OSEDiff's tagger: RAM (Recognize Anything, a Swin backbone at 384 with a query-to-label tagging head) as DAPE
fine-tunes it, image -> per-class probabilities, as the official ``generate_tag`` computes them before it
compares them with the class thresholds.

The official path (``ram/models/ram_lora.py`` in cswry/OSEDiff): Swin -> [mean token, tokens] -> ``image_proj``;
the label embeddings go through ``wordvec_proj`` and a ReLU and query those image embeddings in a BERT whose
layers keep only their cross-attention and feed-forward parts (``mode='tagging'``); ``fc`` gives one logit per
class. Every size is read from the checkpoint's tensor shapes (``RamConfig.from_shapes``); the constants below
are what no tensor shape decides. Parameter names are the checkpoint's, except in the tagging head
(``HEAD_PARAMETERS`` maps them).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...swin_windows import relative_position_index

IMAGE_SIZE = 384  # config_swinL_384.json "image_res": the window masks are built for this input size
HEAD_ATTENTION_HEADS = 4  # q2l_config.json "num_attention_heads"
HEAD_LAYER_NORM_EPS = 1e-12  # q2l_config.json "layer_norm_eps"
SWIN_LAYER_NORM_EPS = 1e-5  # torch's LayerNorm default: the official Swin passes norm_layer=nn.LayerNorm
SHIFTED_WINDOW_MASK = -100.0  # swin_transformer.py masks token pairs from different regions with -100, not -inf
# test_osediff.py's ram_transforms: the ImageNet statistics.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Tagging-head parameters: our name -> the name under tagging_head.encoder.layer.<i>. in the checkpoint.
HEAD_PARAMETERS = {
    "query": "crossattention.self.query",
    "key": "crossattention.self.key",
    "value": "crossattention.self.value",
    "attention_out": "crossattention.output.dense",
    "attention_norm": "crossattention.output.LayerNorm",
    "ffn_in": "intermediate.dense",
    "ffn_out": "output.dense",
    "ffn_norm": "output.LayerNorm",
}
_HEAD_PARAMETER_NAMES = {official: ours for ours, official in HEAD_PARAMETERS.items()}
CHECKPOINT_HEAD_PREFIX = "tagging_head.encoder.layer."


@dataclass(frozen=True)
class SwinStage:
    dim: int
    depth: int
    heads: int
    window: int  # as the blocks use it: the official shrinks it to the feature map when that is no larger
    mlp_hidden: int
    merges_patches: bool  # a PatchMerging (2x2 -> 1, width x2) follows the stage


@dataclass(frozen=True)
class RamConfig:
    patch_size: int
    stages: tuple[SwinStage, ...]
    embed_dim: int  # image_proj's output, the width the labels query in
    head_width: int
    head_ffn_width: int
    head_layers: int
    num_classes: int

    @staticmethod
    def from_shapes(shapes: Mapping[str, torch.Size]) -> RamConfig:
        """The sizes behind checkpoint tensors of these shapes (names as in the checkpoint). A missing tensor is a
        KeyError naming it; sizes that cannot fit together are a ValueError."""
        patch = shapes["visual_encoder.patch_embed.proj.weight"]
        stages = []
        dim = patch[0]
        for index in range(_count(shapes, r"visual_encoder\.layers\.(\d+)\.")):
            prefix = f"visual_encoder.layers.{index}."
            depth = _count(shapes, re.escape(prefix) + r"blocks\.(\d+)\.")
            table = shapes[prefix + "blocks.0.attn.relative_position_bias_table"]
            window = (math.isqrt(table[0]) + 1) // 2
            if (2 * window - 1) ** 2 != table[0]:
                raise ValueError(f"{prefix}blocks.0.attn.relative_position_bias_table has {table[0]} rows, not the "
                                 "(2 * window - 1)^2 of a square window")
            merges = prefix + "downsample.reduction.weight" in shapes
            stages.append(SwinStage(dim, depth, table[1], window, shapes[prefix + "blocks.0.mlp.fc1.weight"][0], merges))
            dim *= 2 if merges else 1
        head_layers = _count(shapes, re.escape(CHECKPOINT_HEAD_PREFIX) + r"(\d+)\.")
        if not stages or not head_layers:
            missing = "visual_encoder.layers.0.blocks.0" if not stages else CHECKPOINT_HEAD_PREFIX + "0"
            raise KeyError(f"{missing}.*")
        return RamConfig(
            patch_size=patch[-1],
            stages=tuple(stages),
            embed_dim=shapes["image_proj.weight"][0],
            head_width=shapes["wordvec_proj.weight"][0],
            head_ffn_width=shapes[CHECKPOINT_HEAD_PREFIX + "0.intermediate.dense.weight"][0],
            head_layers=head_layers,
            num_classes=shapes["label_embed"][0],
        )


def _count(shapes: Mapping[str, torch.Size], pattern: str) -> int:
    """How many consecutive indices from 0 the captured number of ``pattern`` takes among the names."""
    found = {int(m.group(1)) for name in shapes if (m := re.match(pattern, name))}
    count = 0
    while count in found:
        count += 1
    return count


def tagger_input(lq: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> the tagger's (B, 3, 384, 384) input, as test_osediff.py's ram_transforms makes it:
    torchvision's tensor ``Resize`` of the pinned era (torch 2.0.1, torchvision 0.15) is bilinear with
    half-pixel centres and NO antialias (its default became antialias=True only in 0.17), then ``Normalize``."""
    resized = F.interpolate(lq, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False,
                            antialias=False)
    mean = torch.tensor(IMAGENET_MEAN, dtype=lq.dtype, device=lq.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=lq.dtype, device=lq.device).view(1, 3, 1, 1)
    return (resized - mean) / std


def _to_windows(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * windows, window^2, C), windows row-major."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def _from_windows(windows: torch.Tensor, window: int, size: int) -> torch.Tensor:
    """The inverse of ``_to_windows`` for a size x size map: (B * windows, window^2, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.view(-1, size // window, size // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, size, size, c)


def shifted_window_mask(size: int, window: int, shift: int) -> torch.Tensor:
    """(windows, window^2, window^2) additive mask for a size x size map rolled by -shift: after the roll, the
    last window row and column hold tokens from three bands each ([0, size - window), then up to size - shift,
    then the wrapped-around rest), which must not attend across bands."""
    band = (torch.arange(size) >= size - window).long() + (torch.arange(size) >= size - shift).long()
    region = (band[:, None] * 3 + band[None, :]).view(1, size, size, 1).float()
    labels = _to_windows(region, window).squeeze(-1)
    differs = labels[:, :, None] != labels[:, None, :]
    return torch.where(differs, SHIFTED_WINDOW_MASK, 0.0)


class WindowAttention(nn.Module):
    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        # Rebuilt, not loaded: the official loader drops the checkpoint's copy too.
        self.register_buffer("relative_position_index", relative_position_index(window).flatten(), persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        # The official order (q scaled before the product), so results agree to the last bits.
        scores = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index].view(n, n, -1).permute(2, 0, 1)
        scores = scores + bias.unsqueeze(0)
        if mask is not None:
            windows = mask.shape[0]
            scores = (scores.view(-1, windows, self.heads, n, n) + mask[None, :, None]).view(-1, self.heads, n, n)
        out = scores.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    def __init__(self, stage: SwinStage, size: int, shifted: bool):
        super().__init__()
        self.size = size
        self.window = stage.window
        # One window covering the whole map is never shifted (the official forces shift 0 there).
        self.shift = stage.window // 2 if shifted and stage.window < size else 0
        self.norm1 = nn.LayerNorm(stage.dim, eps=SWIN_LAYER_NORM_EPS)
        self.attn = WindowAttention(stage.dim, stage.heads, stage.window)
        self.norm2 = nn.LayerNorm(stage.dim, eps=SWIN_LAYER_NORM_EPS)
        self.mlp = Mlp(stage.dim, stage.mlp_hidden)
        mask = shifted_window_mask(size, self.window, self.shift) if self.shift else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        h = self.norm1(x).view(b, self.size, self.size, c)
        if self.shift:
            h = torch.roll(h, shifts=(-self.shift, -self.shift), dims=(1, 2))
        h = _from_windows(self.attn(_to_windows(h, self.window), self.attn_mask), self.window, self.size)
        if self.shift:
            h = torch.roll(h, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + h.reshape(b, n, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    def __init__(self, dim: int, size: int):
        super().__init__()
        self.size = size
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim, eps=SWIN_LAYER_NORM_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, c = x.shape
        x = x.view(b, self.size, self.size, c)
        # The official channel order: (even row, even col), (odd, even), (even, odd), (odd, odd).
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class SwinStageModule(nn.Module):
    def __init__(self, stage: SwinStage, size: int):
        super().__init__()
        if size % stage.window:
            raise ValueError(f"a {size}x{size} feature map does not split into {stage.window}x{stage.window} windows")
        self.blocks = nn.ModuleList(SwinBlock(stage, size, shifted=i % 2 == 1) for i in range(stage.depth))
        self.downsample = PatchMerging(stage.dim, size) if stage.merges_patches else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(dim, eps=SWIN_LAYER_NORM_EPS)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(image).flatten(2).transpose(1, 2))


class SwinBackbone(nn.Module):
    """(B, 3, 384, 384) -> (B, 1 + tokens, width): the mean of the final tokens, then the tokens."""

    def __init__(self, config: RamConfig, image_size: int):
        super().__init__()
        self.patch_embed = PatchEmbed(config.patch_size, config.stages[0].dim)
        size = image_size // config.patch_size
        layers = []
        for stage in config.stages:
            layers.append(SwinStageModule(stage, size))
            size //= 2 if stage.merges_patches else 1
        self.layers = nn.ModuleList(layers)
        last = config.stages[-1]
        self.norm = nn.LayerNorm(last.dim * (2 if last.merges_patches else 1), eps=SWIN_LAYER_NORM_EPS)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(image)
        for layer in self.layers:
            x = layer(x)
        x = self.norm(x)
        return torch.cat([x.mean(dim=1, keepdim=True), x], dim=1)


class TagDecoderLayer(nn.Module):
    """One tagging-head layer: the label queries attend to the image embeddings, then a GELU feed-forward; both
    post-norm residuals, as BERT's."""

    def __init__(self, config: RamConfig):
        super().__init__()
        width = config.head_width
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(config.embed_dim, width)
        self.value = nn.Linear(config.embed_dim, width)
        self.attention_out = nn.Linear(width, width)
        self.attention_norm = nn.LayerNorm(width, eps=HEAD_LAYER_NORM_EPS)
        self.ffn_in = nn.Linear(width, config.head_ffn_width)
        self.ffn_out = nn.Linear(config.head_ffn_width, width)
        self.ffn_norm = nn.LayerNorm(width, eps=HEAD_LAYER_NORM_EPS)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, HEAD_ATTENTION_HEADS, -1).transpose(1, 2)

    def forward(self, labels: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(self.query(labels)), self._heads(self.key(image)), self._heads(self.value(image))
        # BERT's order: the product, then the division by sqrt(head size). Its all-ones image mask adds zeros.
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        context = (scores.softmax(dim=-1) @ v).transpose(1, 2).flatten(2)
        x = self.attention_norm(self.attention_out(context) + labels)
        return self.ffn_norm(self.ffn_out(F.gelu(self.ffn_in(x))) + x)


class RamTagger(nn.Module):
    """(B, 3, 384, 384) ImageNet-normalised -> (B, classes) probabilities: sigmoid of RAM's tagging logits."""

    def __init__(self, config: RamConfig, image_size: int = IMAGE_SIZE):
        super().__init__()
        self.config = config
        self.image_size = image_size
        self.visual_encoder = SwinBackbone(config, image_size)
        self.image_proj = nn.Linear(self.visual_encoder.norm.normalized_shape[0], config.embed_dim)
        self.label_embed = nn.Parameter(torch.zeros(config.num_classes, config.embed_dim))
        self.wordvec_proj = nn.Linear(config.embed_dim, config.head_width)
        self.tagging_head = nn.ModuleList(TagDecoderLayer(config) for _ in range(config.head_layers))
        self.fc = nn.Linear(config.head_width, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        image_embeds = self.image_proj(self.visual_encoder(image))
        labels = F.relu(self.wordvec_proj(self.label_embed))
        labels = labels.unsqueeze(0).expand(image.shape[0], -1, -1)
        for layer in self.tagging_head:
            labels = layer(labels, image_embeds)
        return torch.sigmoid(self.fc(labels).squeeze(-1))


def module_key(checkpoint_key: str) -> str | None:
    """Our parameter name for a tagging-head checkpoint key (``tagging_head.encoder.layer.<i>.<part>.<tensor>``),
    None for other keys (the rest of our names are the checkpoint's)."""
    if not checkpoint_key.startswith(CHECKPOINT_HEAD_PREFIX):
        return None
    index, _, rest = checkpoint_key.removeprefix(CHECKPOINT_HEAD_PREFIX).partition(".")
    part, _, tensor = rest.rpartition(".")
    ours = _HEAD_PARAMETER_NAMES.get(part)
    return f"tagging_head.{index}.{ours}.{tensor}" if ours else None


def checkpoint_key(our_key: str) -> str:
    """The checkpoint key a parameter of ``RamTagger`` is read from."""
    if not our_key.startswith("tagging_head."):
        return our_key
    _, index, name, tensor = our_key.split(".")
    return f"{CHECKPOINT_HEAD_PREFIX}{index}.{HEAD_PARAMETERS[name]}.{tensor}"
