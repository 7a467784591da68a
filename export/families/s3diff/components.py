"""Everything S3Diff runs, loaded from the official files: SD-Turbo (InvSR's offline loaders), ``s3diff.pkl``
(the LoRA of the UNet and the VAE encoder, the retrained UNet ``conv_in``, the modulation MLPs) and
``de_net.pth``, plus the one-step DDPM the official builds from SD-Turbo's scheduler config."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from sr_runtime.errors import SRError

from ...sd.loading import SDComponents, load_sd
from ...sd.lora import without_adapter_name
from ...sd.models import SD_TURBO
from ...sd.one_step import OneStep, one_step
from ...sd.prompts import encode_prompt
from .checkpoint import UNET_ADAPTER, VAE_ADAPTER, S3DiffCheckpoint, load_s3diff_checkpoint
from .de_net import DEResNet, load_de_net
from .lora import Adapter, ModulationContext, inject_lora, unet_block, vae_block
from .modulation import DegradationModulation

# The official defaults (--pos_prompt, --neg_prompt in src/my_utils/testing_utils.py).
POSITIVE_PROMPT = ("A high-resolution, 8K, ultra-realistic image with sharp focus, vibrant colors, and natural "
                   "lighting.")
NEGATIVE_PROMPT = ("oil painting, cartoon, blur, dirty, messy, low quality, deformation, low resolution, "
                   "oversmooth")
GUIDANCE_SCALE = 1.07  # S3Diff.__init__: self.guidance_scale
TIMESTEP = 999  # S3Diff.__init__: self.timesteps = [999]
CONV_IN = ("conv_in.weight", "conv_in.bias")


@dataclass
class S3DiffComponents:
    sd_turbo: SDComponents  # its UNet and VAE encoder carry the modulated LoRA layers
    de_net: DEResNet
    unet_modulation: DegradationModulation
    vae_modulation: DegradationModulation
    unet_context: ModulationContext
    vae_context: ModulationContext
    one_step: OneStep
    checkpoint: S3DiffCheckpoint
    # The tiled VAE's segments by kind, built once (vae_segments.segments_of).
    vae_segments: dict = field(default_factory=dict, repr=False)

    @property
    def latent_scale(self) -> float:
        return float(self.sd_turbo.vae.config.scaling_factor)

    @property
    def latent_channels(self) -> int:
        return int(self.sd_turbo.vae.config.latent_channels)

    @property
    def vae_factor(self) -> int:
        return 2 ** (len(self.sd_turbo.vae.config.block_out_channels) - 1)

    def prompt_embeds(self) -> torch.Tensor:
        """(2, tokens, width): the positive then the negative prompt, as the official encodes them."""
        return torch.cat([encode_prompt(self.sd_turbo, POSITIVE_PROMPT), encode_prompt(self.sd_turbo, NEGATIVE_PROMPT)])


def _load_conv_in(unet: torch.nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    conv = unet.conv_in
    for key, target in zip(CONV_IN, (conv.weight, conv.bias), strict=True):
        value = state.pop(key, None)
        if value is None or value.shape != target.shape:
            found = "missing" if value is None else f"of shape {tuple(value.shape)}"
            raise SRError(f"{source}: state_dict_unet's {key} is {found}; SD-Turbo's conv_in is {tuple(target.shape)}")
        target.data.copy_(value)


def _check_consumed(state: dict[str, torch.Tensor], entry: str, source: Path) -> None:
    if state:
        keys = sorted(state)
        raise SRError(f"{source}: {entry} holds {len(keys)} weights no targeted layer takes ({', '.join(keys[:3])}"
                      f"{', ...' if len(keys) > 3 else ''}); is the checkpoint for another SD-Turbo?")


def _adapt(network: torch.nn.Module, prefix: str, state: dict, adapter: Adapter, modulation: DegradationModulation,
           context: ModulationContext, source: Path, entry: str) -> None:
    if not inject_lora(network, prefix, state, adapter, modulation.blocks, context, str(source)):
        raise SRError(f"{source}: the LoRA targets of {entry} match no layer of SD-Turbo")
    _check_consumed(state, entry, source)


def load_components(sd_turbo: str | Path, checkpoint: str | Path, de_net: str | Path) -> S3DiffComponents:
    return assemble(load_sd(sd_turbo, SD_TURBO), load_s3diff_checkpoint(checkpoint), load_de_net(de_net))


def assemble(sd: SDComponents, ck: S3DiffCheckpoint, de_net: DEResNet) -> S3DiffComponents:
    """S3Diff from loaded parts: the checkpoint's LoRA layers and conv_in go into ``sd``'s UNet and VAE encoder."""
    source = ck.path
    unet_modulation = DegradationModulation(ck.unet_modulation, ck.w, ck.rank_unet, "unet", str(source))
    vae_modulation = DegradationModulation(ck.vae_modulation, ck.w, ck.rank_vae, "vae", str(source))
    outside = [name for name, _ in sd.vae.named_modules() if name and not name.startswith("encoder.")
               and ck.vae_targets.match(name)]
    if outside:
        raise SRError(f"{source}: vae_lora_target_modules matches {outside[0]}; S3Diff adapts the VAE encoder only")
    unet_state = without_adapter_name(ck.unet_state, UNET_ADAPTER, str(source))
    _load_conv_in(sd.unet, unet_state, source)
    unet_context, vae_context = ModulationContext(), ModulationContext()
    _adapt(sd.unet, "", unet_state, Adapter(UNET_ADAPTER, ck.rank_unet, ck.unet_targets, unet_block), unet_modulation,
           unet_context, source, "state_dict_unet")
    vae_state = without_adapter_name(ck.vae_state, VAE_ADAPTER, str(source))
    _adapt(sd.vae.encoder, "encoder.", vae_state, Adapter(VAE_ADAPTER, ck.rank_vae, ck.vae_targets, vae_block),
           vae_modulation, vae_context, source, "state_dict_vae")
    return S3DiffComponents(sd, de_net, unet_modulation.eval(), vae_modulation.eval(), unet_context, vae_context,
                            one_step(sd.scheduler_config, TIMESTEP, "S3Diff", sd.folder), ck)
