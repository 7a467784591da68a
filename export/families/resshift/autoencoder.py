"""ResShift's VQ-f4 autoencoder ``VQModelTorch`` (``ldm/models/autoencoder.py``, the LDM vq-f4 first
stage in plain PyTorch): encode = encoder + quant_conv (no quantisation), decode = nearest-codebook
quantisation + post_quant_conv + decoder. Module names follow the official ones (``encoder.down.0.block.0
.norm1``, ``quantize.embedding.weight``...), so ``autoencoder_vq_f4.pth`` loads key for key.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import GROUPS, VQConfig
from .layers import Upsample


def swish(x: torch.Tensor) -> torch.Tensor:
    # Written as the official ``nonlinearity`` (not F.silu) so the arithmetic is the same.
    return x * torch.sigmoid(x)


def normalize(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(GROUPS, channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, channels: int, out_channels: int):
        super().__init__()
        self.norm1 = normalize(channels)
        self.conv1 = nn.Conv2d(channels, out_channels, 3, padding=1)
        self.norm2 = normalize(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if channels != out_channels:
            self.nin_shortcut = nn.Conv2d(channels, out_channels, 1)
        self.shortcut = channels != out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(swish(self.norm2(self.conv1(swish(self.norm1(x))))))
        return (self.nin_shortcut(x) if self.shortcut else x) + h


# Above this many pixels the (pixels x pixels) score matrix would pass 1 GiB in fp32 (128x128 latents; a
# 512-px chop has 256x256 and a 256 GiB matrix): the same attention runs in torch's memory-efficient
# kernel, as the official does when xformers is installed. Below, the official arithmetic, step for step.
EXACT_ATTENTION_PIXELS = 128 * 128


class AttnBlock(nn.Module):
    """Single-head self-attention over every pixel (the mid block of both halves)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = normalize(channels)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(channels, channels, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h_ = self.norm(x)
        q, k, v = self.q(h_), self.k(h_), self.v(h_)
        b, c, h, w = q.shape
        if torch.onnx.is_in_onnx_export() or h * w > EXACT_ATTENTION_PIXELS:
            # As one op: ONNX Runtime bundles fuse it (sr_export.attention), so no score matrix is ever
            # stored; TensorRT gets MatMul / Softmax / MatMul.
            tokens = [t.reshape(b, 1, c, h * w).transpose(2, 3) for t in (q, k, v)]
            out = F.scaled_dot_product_attention(*tokens).transpose(2, 3).reshape(b, c, h, w)
        else:
            weights = torch.bmm(q.reshape(b, c, h * w).permute(0, 2, 1), k.reshape(b, c, h * w)) * (int(c) ** (-0.5))
            weights = F.softmax(weights, dim=2).permute(0, 2, 1)
            out = torch.bmm(v.reshape(b, c, h * w), weights).reshape(b, c, h, w)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    def __init__(self, channels: int, with_conv: bool):
        super().__init__()
        self.with_conv = with_conv
        if with_conv:
            self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_conv:
            return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0))
        return F.avg_pool2d(x, kernel_size=2, stride=2)


class Level(nn.Module):
    """One resolution: ResnetBlocks, each followed by attention at an attention resolution."""

    def __init__(self, widths: list[tuple[int, int]], attention: bool):
        super().__init__()
        self.block = nn.ModuleList(ResnetBlock(i, o) for i, o in widths)
        self.attn = nn.ModuleList(AttnBlock(o) for _, o in widths) if attention else nn.ModuleList()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.block):
            x = block(x)
            if len(self.attn):
                x = self.attn[i](x)
        return x


class Middle(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.block_1, self.attn_1, self.block_2 = ResnetBlock(channels, channels), AttnBlock(channels), ResnetBlock(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    def __init__(self, c: VQConfig):
        super().__init__()
        self.conv_in = nn.Conv2d(3, c.ch, 3, padding=1)
        self.down = nn.ModuleList()
        resolution, channels = c.resolution, c.ch
        for i, mult in enumerate(c.ch_mult):
            out = c.ch * mult
            level = Level([(channels if j == 0 else out, out) for j in range(c.num_res_blocks[i])],
                          resolution in c.attn_resolutions)
            channels = out
            if i != len(c.ch_mult) - 1:
                level.downsample = Downsample(channels, c.resamp_with_conv)
                resolution //= 2
            self.down.append(level)
        self.mid = Middle(channels)
        self.norm_out = normalize(channels)
        self.conv_out = nn.Conv2d(channels, c.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for i, level in enumerate(self.down):
            h = level(h)
            if i != len(self.down) - 1:
                h = level.downsample(h)
        return self.conv_out(swish(self.norm_out(self.mid(h))))


class Decoder(nn.Module):
    def __init__(self, c: VQConfig):
        super().__init__()
        channels = c.ch * c.ch_mult[-1]
        resolution = c.resolution // 2 ** (len(c.ch_mult) - 1)
        self.conv_in = nn.Conv2d(c.z_channels, channels, 3, padding=1)
        self.mid = Middle(channels)
        levels = []
        for i in reversed(range(len(c.ch_mult))):
            out = c.ch * c.ch_mult[i]
            level = Level([(channels if j == 0 else out, out) for j in range(c.num_res_blocks[i] + 1)],
                          resolution in c.attn_resolutions)
            channels = out
            if i != 0:
                level.upsample = Upsample(channels, c.resamp_with_conv)
                resolution *= 2
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.norm_out = normalize(channels)
        self.conv_out = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for i in reversed(range(len(self.up))):
            h = self.up[i](h)
            if i != 0:
                h = self.up[i].upsample(h)
        return self.conv_out(swish(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """Nearest codebook entry per latent pixel, by the official distance |z|^2 + |e|^2 - 2 z.e.

    The codebook stays fp32 in every precision and the distances and argmin run in fp32: with 8192
    codes, distances rounded to fp16 tie and flip codes. What still moves in an fp16 engine is z itself.
    """

    def __init__(self, n_embed: int, embed_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim)

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        self.embedding.weight.data = self.embedding.weight.data.float()  # a model-wide .half() leaves it fp32
        return self

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        codebook = self.embedding.weight
        z32 = z.float().permute(0, 2, 3, 1)
        flat = z32.reshape(-1, codebook.shape[1])
        distances = (torch.sum(flat**2, dim=1, keepdim=True) + torch.sum(codebook**2, dim=1)
                     - 2 * torch.einsum("bd,dn->bn", flat, codebook.t()))
        nearest = self.embedding(torch.argmin(distances, dim=1)).reshape(z32.shape)
        # The official's straight-through form z + (z_q - z): not exactly z_q in floating point.
        return (z32 + (nearest - z32)).permute(0, 3, 1, 2).to(z.dtype)


class VQModelTorch(nn.Module):
    def __init__(self, c: VQConfig):
        super().__init__()
        self.encoder = Encoder(c)
        self.decoder = Decoder(c)
        self.quantize = VectorQuantizer(c.n_embed, c.embed_dim)
        self.quant_conv = nn.Conv2d(c.z_channels, c.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(c.embed_dim, c.z_channels, 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.quant_conv(self.encoder(x))

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(self.quantize(h)))
