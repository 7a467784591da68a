"""Random-weight OSEDiff checkpoints in the official formats: an SD-2.1-base release (the SD layer's writer),
``osediff.pkl`` as ``OSEDiff_gen.save_model`` writes it, RAM and DAPE with RAM's tag files; tiny ones for the tests
and the demo model. The real loaders read them; everything is seeded."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from torch import nn

from ...sd.lora import Targets
from ...sd.models import SD21_BASE
from ...sd.random_checkpoints import random_lora_state, write_random_sd
from .checkpoint import FILE_NAME, UNET_ADAPTERS, VAE_ADAPTER, VAE_MODULES
from .locate import OSEDiffPaths
from .random_ram import TINY_RAM, TinyRamSizes, write_random_ram

SD21_FOLDER = "sd21"
RAM_FOLDER = "ram"
# RAM Swin-L at 384 as config_swinL_384.json and q2l_config.json give it, 4585 classes (the captioning branches,
# off the tagging path, at their smallest).
FULL_RAM = TinyRamSizes(embed_dim=192, depths=(2, 2, 18, 2), heads=(6, 12, 24, 48), head_width=768,
                        head_ffn_width=3072, head_layers=2, num_classes=4585)
RAM_SIZES = {"tiny": TINY_RAM, "full": FULL_RAM}
RANK = 4  # the training script's --lora_rank default, which the released osediff.pkl has
# The substrings initialize_unet / initialize_vae select LoRA layers by (in weight names without bias or norm).
UNET_SUBSTRINGS = ("to_k", "to_q", "to_v", "to_out.0", "conv", "conv1", "conv2", "conv_in", "conv_shortcut",
                   "conv_out", "proj_out", "proj_in", "ff.net.2", "ff.net.0.proj")
VAE_SUBSTRINGS = ("conv1", "conv2", "conv_in", "conv_shortcut", "conv", "conv_out", "to_k", "to_q", "to_v", "to_out.0")


def _weights(network: nn.Module) -> list[str]:
    """The module names of the weights the official selection looks at."""
    return [name.removesuffix(".weight") for name, _ in network.named_parameters()
            if "bias" not in name and "norm" not in name]


def unet_lora_modules(unet: nn.Module) -> dict[str, list[str]]:
    """initialize_unet's three lists: down blocks and conv_in, up blocks and conv_out, the rest."""
    modules: dict[str, list[str]] = {adapter: [] for adapter in UNET_ADAPTERS}
    for name in _weights(unet):
        if not any(part in name for part in UNET_SUBSTRINGS):
            continue
        if "down_blocks" in name or "conv_in" in name:
            modules["default_encoder"].append(name)
        elif "up_blocks" in name or "conv_out" in name:
            modules["default_decoder"].append(name)
        else:
            modules["default_others"].append(name)
    return modules


def vae_lora_modules(vae: nn.Module) -> list[str]:
    """initialize_vae's list: the encoder's matching layers and quant_conv."""
    return [name for name in _weights(vae)
            if ("encoder" in name and any(part in name for part in VAE_SUBSTRINGS))
            or ("quant_conv" in name and "post_quant_conv" not in name)]


def write_random_checkpoint(path: Path, sd21: Path, seed: int, rank: int = RANK) -> Path:
    """``osediff.pkl`` for the SD-2.1-base folder ``sd21``, with the official entries and key names."""
    unet = UNet2DConditionModel.from_pretrained(sd21, subfolder="unet", low_cpu_mem_usage=False)
    vae = AutoencoderKL.from_pretrained(sd21, subfolder="vae", low_cpu_mem_usage=False)
    unet_modules, vae_modules = unet_lora_modules(unet), vae_lora_modules(vae)
    torch.manual_seed(seed)
    state_unet = {}
    for adapter, names in unet_modules.items():
        state_unet.update(random_lora_state(unet, "", Targets(None, tuple(names)), adapter, rank))
    # conv_in is retrained as well; PEFT keeps its weights under base_layer since it carries a LoRA.
    conv_in = nn.Conv2d(unet.conv_in.in_channels, unet.conv_in.out_channels, unet.conv_in.kernel_size,
                        padding=unet.conv_in.padding)
    state_unet.update({"conv_in.base_layer.weight": conv_in.weight.detach().clone(),
                       "conv_in.base_layer.bias": conv_in.bias.detach().clone()})
    checkpoint = {
        VAE_MODULES: vae_modules,
        **{UNET_ADAPTERS[adapter]: names for adapter, names in unet_modules.items()},
        "rank_unet": rank,
        "rank_vae": rank,
        "state_dict_unet": state_unet,
        "state_dict_vae": random_lora_state(vae, "", Targets(None, tuple(vae_modules)), VAE_ADAPTER, rank),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


def write_random_osediff(folder: Path, seed: int = 0, size: str = "tiny") -> OSEDiffPaths:
    """A tiny (or, with ``size="full"``, full-width) SD-2.1-base, ``osediff.pkl`` and RAM + DAPE with their tag files
    under ``folder``."""
    folder = Path(folder)
    ram = write_random_ram(folder / RAM_FOLDER, RAM_SIZES[size], seed)
    # The tokenizer learns the tags' words, as the real vocabulary holds them.
    sd21 = write_random_sd(folder / SD21_FOLDER, SD21_BASE, ram.tag_list.read_text(encoding="utf-8"), seed=seed,
                           size="tiny-tiled-vae" if size == "tiny" else "full-text-encoder")
    checkpoint = write_random_checkpoint(folder / FILE_NAME, sd21, seed)
    return OSEDiffPaths(sd21, checkpoint, ram.ram, ram.dape, ram.tag_list, ram.thresholds)
