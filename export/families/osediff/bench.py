"""The OSEDiff-1 row of Table 7: one 128 -> 512 image end to end (the official defaults: no tiling at this size,
the AdaIN colour fix, the tagger and the text encoder included, as the official timing script runs them), and its
stages.

Parameters: the paper's 8.50 M is OSEDiff's training-time count: the generator's UNet LoRA, its VAE-encoder LoRA
and retrained conv_in, plus the LoRA of the regulariser's UNet (the same layers and rank), which is trained for
the VSD loss only and not in osediff.pkl. The row counts them from the checkpoint, and says how many run at
inference (the regulariser's LoRA does not).
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from sr_runtime.families.osediff.options import OSEDiffOptions

from ...bench import family as bench
from ...cache import cache_root, cached_folder
from ...reporting import Report
from ...sd.bench import OneStepBench
from ...sd.lora import Targets, lora_parameter_count
from ...sd.random_checkpoints import FULL_UNET, FULL_VAE
from .checkpoint import OSEDiffCheckpoint
from .graphs import GRAPHS
from .locate import OSEDiffPaths, find_checkpoints
from .random_checkpoints import RANK, unet_lora_modules, vae_lora_modules
from .reference import OSEDiffReference
from .source import OSEDiffSource, load_source

STAGE_LABELS = {"tagger": "RAM tagger", "text_encoder": "text encoder", "vae_encoder": "VAE encoder",
                "unet": "UNet", "vae_decoder": "VAE decoder"}
# Each graph's module in the reference, by graph.
MODULES = {"tagger": "tagger", "text_encoder": "text_encoder", "vae_encoder": "encoder", "unet": "unet",
           "vae_decoder": "decoder"}


def full_random_checkpoints(report: Report) -> OSEDiffPaths:
    """Full-width SD-2.1-base, RAM Swin-L and DAPE with random weights (the official ranks), cached."""
    from .random_checkpoints import write_random_osediff
    from .source import demo_paths

    return demo_paths(cached_folder(cache_root() / "bench-checkpoints" / "osediff-full-seed0",
                                    lambda tmp: write_random_osediff(tmp, seed=0, size="full"), report,
                                    "full-size random-weight OSEDiff checkpoints"))


def parameter_count(unet_lora: int, conv_in: int, vae_lora: int) -> bench.ParamCount:
    """The training-time count (with the regulariser's UNet LoRA), and how much of it runs at inference."""
    inference = unet_lora + conv_in + vae_lora
    return bench.ParamCount((inference + unet_lora) / 1e6,
                            f"the paper's training-time count: UNet and VAE-encoder LoRA, UNet conv_in and the "
                            f"regulariser's UNet LoRA; {inference / 1e6:.2f} M of it run at inference")


def checkpoint_count(ck: OSEDiffCheckpoint) -> bench.ParamCount:
    return parameter_count(sum(v.numel() for k, v in ck.unet_state.items() if ".lora_" in k),
                           sum(v.numel() for k, v in ck.unet_state.items() if k.startswith("conv_in.base_layer.")),
                           sum(v.numel() for v in ck.vae_state.values()))


def architecture_count(unet_config: dict, vae_config: dict, rank: int = RANK) -> bench.ParamCount:
    """The count of an SD-2.1-base of these configs with the official LoRA selection, on the meta device."""
    with torch.device("meta"):
        unet, vae = UNet2DConditionModel(**unet_config), AutoencoderKL(**vae_config)
    unet_lora = sum(lora_parameter_count(unet, Targets(None, tuple(names)), rank)
                    for names in unet_lora_modules(unet).values())
    conv_in = sum(p.numel() for p in unet.conv_in.parameters())
    return parameter_count(unet_lora, conv_in, lora_parameter_count(vae, Targets(None, tuple(vae_lora_modules(vae))),
                                                                    rank))


class OSEDiffBench(OneStepBench):
    name = "osediff"
    graphs = GRAPHS
    labels = STAGE_LABELS
    modules = MODULES
    methods = {"OSEDiff-1": 1}

    def __init__(self, sd21=None, checkpoint=None, ram=None, dape=None, ram_data=None, report: Report = print):
        self._given = (sd21, checkpoint, ram, dape, ram_data)
        self._report = report
        self._source: OSEDiffSource | None = None
        self.weights = "checkpoints" if any(self._given) else "random (full size)"

    @property
    def source(self) -> OSEDiffSource:
        if self._source is None:
            paths = find_checkpoints(*self._given) if any(self._given) else full_random_checkpoints(self._report)
            self._source = load_source(paths, False, self._report)
        return self._source

    def params(self, method: bench.Method) -> bench.ParamCount:
        return checkpoint_count(self.source.components.checkpoint)

    def meta_params(self, method: bench.Method) -> bench.ParamCount:
        return architecture_count(FULL_UNET, FULL_VAE)

    def reference(self, device: str, batch: int) -> OSEDiffReference:
        return OSEDiffReference(self.source.components, device=device, batch=batch)

    def options(self) -> OSEDiffOptions:
        return OSEDiffOptions()

    def large_tiles(self, section) -> int:
        from sr_runtime.families.osediff.image_loop import tiling

        return tiling(bench.LARGE, bench.LARGE, section, self.options()).unet_tiles
