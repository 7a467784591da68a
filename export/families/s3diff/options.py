"""S3Diff's command-line options."""

from __future__ import annotations

import click

from ... import cli_options as shared

DE_NET = shared.path_option("--de-net", help="de_net.pth, the degradation estimator (default: ./assets/mm-realsr/ "
                                             "or ./weights/de_net.pth).")
CHECKPOINTS = (shared.CHECKPOINT, shared.SD_TURBO, DE_NET)
LATENT_TILE = click.Option(["--latent-tile"], type=shared.TILE_PX, default=None,
                           help="Latent px per UNet tile; larger latents are tiled (default: the official 96).")
LATENT_OVERLAP = click.Option(["--latent-overlap"], type=click.IntRange(0, shared.MAX_TILE), default=None,
                              help="Latent px the UNet tiles overlap (default: the official 32).")
VAE_ENCODER_TILE = click.Option(["--vae-encoder-tile"], type=shared.TILE_PX, default=None,
                                help="Image px per tile of the official tiled VAE encoder (default 1024).")
VAE_DECODER_TILE = click.Option(["--vae-decoder-tile"], type=shared.TILE_PX, default=None,
                                help="Latent px per tile of the official tiled VAE decoder (default 224).")
TILING = (LATENT_TILE, LATENT_OVERLAP, VAE_ENCODER_TILE, VAE_DECODER_TILE)
