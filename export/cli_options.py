"""Command-line options that several commands or families share, written once.

Families list the ones they take (``ExportFamily.*_options``); the CLI adds each option once per
command, so two families that take ``--checkpoint`` take this very option.
"""

from __future__ import annotations

import math
from pathlib import Path

import click

from sr_runtime.color import COLOR_FIX_METHODS, NO_COLOR_FIX
from sr_runtime.precision import Precision


class FiniteFloatRange(click.FloatRange):
    """click's FloatRange, refusing NaN and infinities (which pass its comparisons)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


# Bounds of the sizes and counts the commands take: far above any sensible value, low enough that a typo
# (a tile of 1e8, a batch of 1e12) is refused at once instead of asking for terabytes.
MAX_TILE = 4096  # LR px per tile side
MAX_BATCH = 256  # tiles per engine call
TILE_PX = click.IntRange(1, MAX_TILE)
BATCH = click.IntRange(1, MAX_BATCH)


def path_option(*decls: str, help: str) -> click.Option:
    return click.Option(list(decls), type=click.Path(path_type=Path), help=help)


CHECKPOINT = path_option("--checkpoint", help="The model's checkpoint file (default: ./weights/<official name>).")
SD_TURBO = path_option("--sd-turbo", help="SD-Turbo diffusers folder or hub cache.")
# The PyTorch reference (upscale --backend torch)
DEVICE = click.Option(["--device"], type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
                      help="Where the PyTorch reference runs.")
# The PyTorch references run fp32 or fp16 (bf16 is a precision of OpenVINO bundles only).
DTYPE = click.Option(["--dtype"], type=click.Choice([p.value for p in (Precision.FP32, Precision.FP16)]), default="fp32",
                     show_default=True,
                     help="The PyTorch reference's precision.")
REFERENCE_TILE = click.Option(["--tile"], type=TILE_PX, default=128, show_default=True, help="LR tile size (chopping size).")
REFERENCE_BATCH = click.Option(["--batch"], type=BATCH, default=8, show_default=True, help="Tiles per network call.")
# Per image
SEED = click.Option(["--seed"], type=click.IntRange(0, 2**63 - 1), default=None,
                    help="Seed of the sampling noise (default: the model's own; InvSR: none, the posterior means; "
                         "ResShift / SinSR: 12345, the official CLIs').")
COLOR_FIX = click.Option(["--color-fix"], type=click.Choice([*COLOR_FIX_METHODS, NO_COLOR_FIX]), default=None,
                         help="Take the colours from the LR image (the official --color_fix / --align_method); "
                              "none keeps the network's (default: the model's own: InvSR none, S3Diff wavelet, OSEDiff "
                              "adain; each family takes those of its official code).")
# The official tiled VAE and latent tiles of the one-step SD families (S3Diff, OSEDiff).
LATENT_TILE = click.Option(["--latent-tile"], type=TILE_PX, default=None,
                           help="Latent px per UNet tile; larger latents are tiled (default: the official 96).")
LATENT_OVERLAP = click.Option(["--latent-overlap"], type=click.IntRange(0, MAX_TILE), default=None,
                              help="Latent px the UNet tiles overlap (default: the official 32).")
VAE_ENCODER_TILE = click.Option(["--vae-encoder-tile"], type=TILE_PX, default=None,
                                help="Image px per tile of the official tiled VAE encoder (default 1024).")
VAE_DECODER_TILE = click.Option(["--vae-decoder-tile"], type=TILE_PX, default=None,
                                help="Latent px per tile of the official tiled VAE decoder (default 224).")
TILING = (LATENT_TILE, LATENT_OVERLAP, VAE_ENCODER_TILE, VAE_DECODER_TILE)
# The click form of the per-image options several families have, in --help order around a family's own
# (``ExportFamily.image_options``): which options a family has is its runtime options type's to say.
PER_IMAGE_FIRST = (COLOR_FIX, SEED)
PER_IMAGE_LAST = TILING
