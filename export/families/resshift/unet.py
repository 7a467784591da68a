"""ResShift's denoiser ``UNetModelSwin`` (zsyOAOA/ResShift ``models/unet.py``; SinSR's copy computes the
same): a UNet of scale-shift ResBlocks with a Swin layer after the first ResBlock of every level at an
attention resolution, conditioned on the step index, taking the latent and the LR patch concatenated.
Module names follow the official ones, so the released state dicts load key for key.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import UNetConfig
from .layers import GroupNorm32, Upsample, timestep_embedding
from .swin import BasicLayer


class Downsample(nn.Module):
    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class ResBlock(nn.Module):
    def __init__(self, channels: int, emb_channels: int, out_channels: int, scale_shift: bool,
                 up: bool = False, down: bool = False):
        super().__init__()
        self.scale_shift = scale_shift
        self.in_layers = nn.Sequential(GroupNorm32(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False), Upsample(channels, False)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False), Downsample(channels, False)
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if scale_shift else out_channels))
        self.out_layers = nn.Sequential(GroupNorm32(out_channels), nn.SiLU(), nn.Dropout(0.0),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.updown:
            h = self.in_layers[2](self.h_upd(self.in_layers[:2](x)))
            x = self.x_upd(x)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).to(h.dtype)[..., None, None]
        if self.scale_shift:
            scale, shift = torch.chunk(emb_out, 2, dim=1)
            h = self.out_layers[1:](self.out_layers[0](h) * (1 + scale) + shift)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class TimestepEmbedSequential(nn.Sequential):
    """Passes the step embedding to the ResBlocks among its layers."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class UNetModelSwin(nn.Module):
    def __init__(self, c: UNetConfig):
        super().__init__()
        self.model_channels = c.model_channels
        emb = c.model_channels * 4
        self.time_embed = nn.Sequential(nn.Linear(c.model_channels, emb), nn.SiLU(), nn.Linear(emb, emb))

        def res(channels: int, out: int, **updown: bool) -> ResBlock:
            return ResBlock(channels, emb, out, c.use_scale_shift_norm, **updown)

        def swin(channels: int, resolution: int) -> BasicLayer:
            return BasicLayer(channels, c.swin_embed_dim, c.num_heads, c.window_size, c.swin_depth, resolution,
                              c.mlp_ratio, c.patch_norm)

        ch = input_ch = c.channel_mult[0] * c.model_channels
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(c.in_channels, ch, 3, padding=1))])
        skip_channels = [ch]
        resolution = c.image_size
        for level, mult in enumerate(c.channel_mult):
            for block in range(c.num_res_blocks[level]):
                layers: list[nn.Module] = [res(ch, mult * c.model_channels)]
                ch = mult * c.model_channels
                if resolution in c.attention_resolutions and block == 0:
                    layers.append(swin(ch, resolution))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_channels.append(ch)
            if level != len(c.channel_mult) - 1:
                down = res(ch, ch, down=True) if c.resblock_updown else Downsample(ch, c.conv_resample)
                self.input_blocks.append(TimestepEmbedSequential(down))
                skip_channels.append(ch)
                resolution //= 2
        self.middle_block = TimestepEmbedSequential(res(ch, ch), swin(ch, resolution), res(ch, ch))
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(c.channel_mult))):
            for block in range(c.num_res_blocks[level] + 1):
                layers = [res(ch + skip_channels.pop(), c.model_channels * mult)]
                ch = c.model_channels * mult
                if resolution in c.attention_resolutions and block == 0:
                    layers.append(swin(ch, resolution))
                if level and block == c.num_res_blocks[level]:
                    layers.append(res(ch, ch, up=True) if c.resblock_updown else Upsample(ch, c.conv_resample))
                    resolution *= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(), nn.Conv2d(input_ch, c.out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        """x0 from the scaled latent ``x``, the step indices ``timesteps`` (B,) and the LR patch ``lq`` in [-1, 1]."""
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels).to(x.dtype))
        h = torch.cat([x, lq.to(x.dtype)], dim=1)
        skips = []
        for module in self.input_blocks:
            h = module(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for module in self.output_blocks:
            h = module(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)
