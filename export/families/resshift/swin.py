"""The Swin layers of ResShift's UNet (``models/swin_transformer.py``), channel-first, with shapes taken
from the input at run time so that one exported graph serves every patch size.

Two things differ from the official code in form only:

- the shifted-window mask is computed from the input size with tensor ops. The official builds it in
  Python on every forward (``calculate_mask``; its stored ``attn_mask`` buffer is never used, as a list is
  compared with a tuple), with two quirks reproduced exactly: its region slices index the size-1 channel
  axis, so only rows are labelled (last window row: rows above H - window, between, and the last
  ``shift`` rows), and its windows are flattened column-first, so a token's label is that of the row
  whose index equals the token's column within the window;
- windows are merged with a -1 batch, where the official computes the batch with a Python ``int()``.

The window size and shift are chosen at construction from the config's ``image_size`` as the official
does (a level no larger than the window gets one unshifted window of its own size).
"""

from __future__ import annotations

import torch
from torch import nn

from ...swin_windows import relative_position_index
from .layers import GroupNorm32

MASKED = -100.0  # the official's additive mask value


def shifted_window_mask(height: int, width: int, window: int, shift: int,
                        device: torch.device | None = None) -> torch.Tensor:
    """(windows, window², window²) additive mask of the official ``calculate_mask`` for a height x width map."""
    rows = torch.arange(height, device=device)
    label = (rows >= height - window).long() + (rows >= height - shift).long()
    token_label = label.reshape(-1, window).repeat(1, window)  # (window rows, tokens): label of row (token % window)
    differ = token_label[:, :, None] != token_label[:, None, :]
    mask = torch.where(differ, MASKED, 0.0)
    tokens = window * window
    return mask[:, None].expand(-1, width // window, tokens, tokens).reshape(-1, tokens, tokens)


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, C, H, W) -> (B * windows, window², C), windows row-major, tokens row-major within each."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // window, window, w // window, window)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(-1, window * window, c)


def window_reverse(windows: torch.Tensor, window: int, height: int, width: int) -> torch.Tensor:
    """(B * windows, window², C) -> (B, C, H, W), the inverse of ``window_partition``."""
    c = windows.shape[-1]
    x = windows.reshape(-1, height // window, width // window, window, window, c)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(-1, c, height, width)


class WindowAttention(nn.Module):
    def __init__(self, dim: int, window: int, heads: int):
        super().__init__()
        self.window = window
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        # Loaded from the checkpoint like every buffer, and used as loaded (the official does the same).
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``x`` (B * windows, tokens, C); ``mask`` (windows, tokens, tokens) or None."""
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)].reshape(n, n, -1)
        attn = attn + bias.permute(2, 0, 1).unsqueeze(0).to(attn.dtype)
        if mask is not None:
            windows = mask.shape[0]
            attn = attn.reshape(-1, windows, self.heads, n, n) + mask.to(attn.dtype).unsqueeze(1).unsqueeze(0)
            attn = attn.reshape(-1, self.heads, n, n)
        # Softmax in fp32 (a no-op in fp32): fp16 engines keep it there.
        attn = attn.float().softmax(dim=-1).to(v.dtype)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinTransformerBlock(nn.Module):
    def __init__(self, dim: int, resolution: int, heads: int, window: int, shift: int, mlp_ratio: float):
        super().__init__()
        if resolution <= window:
            window, shift = resolution, 0
        self.window, self.shift = window, shift
        self.norm1 = GroupNorm32(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = GroupNorm32(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        # The official stores the construct-size mask in its checkpoints (and never reads it): kept so the
        # state dicts match key for key.
        if shift:
            self.register_buffer("attn_mask", shifted_window_mask(resolution, resolution, window, shift))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.shape
        shortcut = x
        x = self.norm1(x)
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(2, 3))
            mask = shifted_window_mask(h, w, self.window, self.shift, x.device)
        else:
            mask = None  # the official adds an all-zero mask here
        x = window_reverse(self.attn(window_partition(x, self.window), mask), self.window, h, w)
        if self.shift:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(2, 3))
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PatchProjection(nn.Module):
    """The 1x1 conv in or out of the Swin width (``PatchEmbed`` / ``PatchUnEmbed`` with patch size 1)."""

    def __init__(self, channels_in: int, channels_out: int, norm: bool):
        super().__init__()
        self.proj = nn.Conv2d(channels_in, channels_out, 1)
        self.norm = GroupNorm32(channels_out) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


class BasicLayer(nn.Module):
    def __init__(self, channels: int, embed_dim: int, heads: int, window: int, depth: int, resolution: int,
                 mlp_ratio: float, patch_norm: bool):
        super().__init__()
        self.patch_embed = PatchProjection(channels, embed_dim, patch_norm)
        self.patch_unembed = PatchProjection(embed_dim, channels, patch_norm)
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(embed_dim, resolution, heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio)
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for block in self.blocks:
            x = block(x)
        return self.patch_unembed(x)
