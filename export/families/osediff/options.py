"""OSEDiff's command-line options."""

from __future__ import annotations

import click

from ... import cli_options as shared

SD21 = shared.path_option("--sd21", help="SD-2.1-base diffusers folder or hub cache (the official "
                                         "--pretrained_model_name_or_path).")
RAM = shared.path_option("--ram", help="ram_swin_large_14m.pth, RAM's weights (default: ./preset/models/).")
DAPE = shared.path_option("--dape", help="DAPE.pth, the tagger's LoRA (default: ./preset/models/).")
RAM_DATA = shared.path_option("--ram-data", help="The folder of RAM's ram_tag_list.txt and "
                                                 "ram_tag_list_threshold.txt (default: beside --ram, else ./ram/data/).")
CHECKPOINTS = (shared.CHECKPOINT, SD21, RAM, DAPE, RAM_DATA)
PROMPT = click.Option(["--prompt"], default="", help="Words added after the image's tags (the official --prompt).")
