"""OSEDiff's networks loaded as ``OSEDiff_test`` runs them with ``--merge_and_unload_lora``: SD-2.1-base with the
checkpoint's retrained conv_in and its LoRA merged into the UNet (three adapters) and the VAE encoder, the RAM
tagger with DAPE's LoRA merged, RAM's tags and class thresholds, and the one DDPM step at t = 999. Merging is exact
up to rounding: the adapters are static (nothing modulates them per image)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from sr_runtime.errors import SRError

from ...sd.loading import SDComponents, load_sd
from ...sd.lora import merge_lora
from ...sd.models import SD21_BASE
from ...sd.one_step import OneStep, one_step
from .checkpoint import VAE_ADAPTER, OSEDiffCheckpoint, load_osediff_checkpoint
from .locate import OSEDiffPaths
from .ram import RamTagger
from .ram_checkpoint import TagVocabulary, load_ram_tagger, read_tag_vocabulary

TIMESTEP = 999  # OSEDiff_test.__init__: self.timesteps = torch.tensor([999])
CONV_IN = {"conv_in.base_layer.weight": "weight", "conv_in.base_layer.bias": "bias"}  # PEFT's names of its base


@dataclass
class OSEDiffComponents:
    sd: SDComponents  # its UNet and VAE encoder carry the merged LoRA
    checkpoint: OSEDiffCheckpoint
    tagger: RamTagger
    vocabulary: TagVocabulary
    one_step: OneStep
    # The tiled VAE's segments by kind, built once (vae_segments.segments_of).
    vae_segments: dict = field(default_factory=dict)

    @property
    def vae_factor(self) -> int:
        return 2 ** (len(self.sd.vae.config.block_out_channels) - 1)

    @property
    def latent_scale(self) -> float:
        return float(self.sd.vae.config.scaling_factor)

    @property
    def latent_channels(self) -> int:
        return int(self.sd.vae.config.latent_channels)


def _load_conv_in(unet: torch.nn.Module, state: dict[str, torch.Tensor], source: Path) -> set[str]:
    conv = unet.conv_in
    for key, name in CONV_IN.items():
        value, target = state.get(key), getattr(conv, name)
        if value is None or value.shape != target.shape:
            found = "missing" if value is None else f"of shape {tuple(value.shape)}"
            raise SRError(f"{source}: state_dict_unet's {key} is {found}; SD-2.1-base's conv_in is "
                          f"{tuple(target.shape)}")
        target.data.copy_(value)
    return set(CONV_IN)


def _check_consumed(state: dict[str, torch.Tensor], used: set[str], entry: str, source: Path) -> None:
    if left := sorted(set(state) - used):
        raise SRError(f"{source}: {entry} holds {len(left)} weights no targeted layer takes ({', '.join(left[:3])}"
                      f"{', ...' if len(left) > 3 else ''}); is the checkpoint for another SD-2.1-base?")


def assemble(sd: SDComponents, ck: OSEDiffCheckpoint, tagger: RamTagger, vocabulary: TagVocabulary
             ) -> OSEDiffComponents:
    """OSEDiff from loaded parts: conv_in and the LoRA go into ``sd``'s UNet and VAE, as load_ckpt then
    merge_and_unload put them."""
    source = str(ck.path)
    used = _load_conv_in(sd.unet, ck.unet_state, ck.path)
    for adapter, targets in ck.unet_targets.items():
        used |= merge_lora(sd.unet, ck.unet_state, adapter, targets, ck.rank_unet, source)
    _check_consumed(ck.unet_state, used, "state_dict_unet", ck.path)
    used = merge_lora(sd.vae, ck.vae_state, VAE_ADAPTER, ck.vae_targets, ck.rank_vae, source)
    _check_consumed(ck.vae_state, used, "state_dict_vae", ck.path)
    return OSEDiffComponents(sd, ck, tagger, vocabulary, one_step(sd.scheduler_config, TIMESTEP, "OSEDiff", sd.folder))


def load_components(paths: OSEDiffPaths) -> OSEDiffComponents:
    tagger = load_ram_tagger(paths.ram, paths.dape)
    vocabulary = read_tag_vocabulary(paths.tag_list, paths.thresholds, tagger.config.num_classes)
    return assemble(load_sd(paths.sd21, SD21_BASE), load_osediff_checkpoint(paths.checkpoint), tagger, vocabulary)
