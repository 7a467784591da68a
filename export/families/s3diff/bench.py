"""The S3Diff-1 row of Table 7: one 128 -> 512 image end to end (the official defaults: no tiling at this size,
the wavelet colour fix), and its stages.

Parameters are counted the paper's way, what S3Diff trains: the LoRA of the UNet and of the VAE encoder, the
UNet's retrained conv_in, the modulation MLPs and the block embeddings; frozen SD-Turbo, the fixed Fourier
frequencies and the pretrained DEResNet are excluded (as InvSR's row counts its noise predictor only).
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from sr_runtime.families.s3diff.options import S3DiffOptions

from ...bench import family as bench
from ...cache import cache_root, cached_folder
from ...reporting import Report
from ...sd.bench import OneStepBench
from ...sd.lora import Targets, lora_parameter_count
from ...sd.random_checkpoints import FULL_UNET, FULL_VAE
from .graphs import GRAPHS
from .locate import S3DiffPaths, find_checkpoints
from .lora import ModulatedLoRA
from .random_checkpoints import (
    BLOCK_EMBEDDING,
    DEGRADATION_WIDTH,
    FOURIER_FEATURES,
    RANKS,
    UNET_BLOCKS,
    UNET_TARGETS,
    VAE_BLOCKS,
    VAE_TARGETS,
)
from .reference import S3DiffReference
from .source import S3DiffSource, load_source

STAGE_LABELS = {"degradation": "DEResNet", "vae_encoder": "VAE encoder", "unet": "UNet (CFG batch 2)",
                "vae_decoder": "VAE decoder"}
# Each graph's module in the reference, by graph.
MODULES = {"degradation": "degradation", "vae_encoder": "encoder", "unet": "unet", "vae_decoder": "decoder"}


def full_random_checkpoints(report: Report) -> S3DiffPaths:
    """Full-width SD-Turbo with random S3Diff weights (the official ranks 32 / 16), cached."""
    from .random_checkpoints import SD_TURBO_FOLDER, write_random_s3diff

    folder = cached_folder(cache_root() / "bench-checkpoints" / "s3diff-full-seed0",
                           lambda tmp: write_random_s3diff(tmp, seed=0, size="full"), report,
                           "full-size random-weight S3Diff checkpoints")
    return S3DiffPaths(folder / SD_TURBO_FOLDER, folder / "s3diff.pkl", folder / "de_net.pth")


def trained_parameters(source: S3DiffSource) -> int:
    c = source.components
    sd = c.sd_turbo
    lora = sum(p.numel() for network in (sd.unet, sd.vae) for m in network.modules() if isinstance(m, ModulatedLoRA)
               for p in (*m.down.parameters(), *m.up.parameters()))
    modulation = sum(p.numel() for m in (c.unet_modulation, c.vae_modulation) for name, p in m.named_parameters()
                     if name != "w")
    return lora + sum(p.numel() for p in sd.unet.conv_in.parameters()) + modulation


def architecture_parameters(unet_config: dict, vae_config: dict, rank_unet: int, rank_vae: int) -> int:
    """What ``trained_parameters`` counts, for SD-Turbo configs and ranks, on the meta device: the LoRA of the
    official targets, conv_in, and per network its modulation MLPs (random_checkpoints' official sizes) and block
    embeddings."""
    with torch.device("meta"):
        unet, vae = UNet2DConditionModel(**unet_config), AutoencoderKL(**vae_config)
    lora = (lora_parameter_count(unet, Targets(None, tuple(UNET_TARGETS)), rank_unet)
            + lora_parameter_count(vae.encoder, Targets(VAE_TARGETS), rank_vae, prefix="encoder."))
    modulation = sum((4 * FOURIER_FEATURES + 1) * DEGRADATION_WIDTH + (BLOCK_EMBEDDING + 1) * 64
                     + (DEGRADATION_WIDTH + 64 + 1) * rank * rank + blocks * BLOCK_EMBEDDING
                     for rank, blocks in ((rank_unet, UNET_BLOCKS), (rank_vae, VAE_BLOCKS)))
    return lora + sum(p.numel() for p in unet.conv_in.parameters()) + modulation


def _count(parameters: int) -> bench.ParamCount:
    return bench.ParamCount(parameters / 1e6, "what S3Diff trains: UNet and VAE-encoder LoRA, UNet conv_in, modulation "
                                              "MLPs and block embeddings (SD-Turbo and DEResNet frozen)")


class S3DiffBench(OneStepBench):
    name = "s3diff"
    graphs = GRAPHS
    labels = STAGE_LABELS
    modules = MODULES
    methods = {"S3Diff-1": 1}

    def __init__(self, sd_turbo=None, checkpoint=None, de_net=None, report: Report = print):
        self._given = (sd_turbo, checkpoint, de_net)
        self._report = report
        self._source: S3DiffSource | None = None
        self.weights = "checkpoints" if any(self._given) else "random (full size)"

    @property
    def source(self) -> S3DiffSource:
        if self._source is None:
            paths = find_checkpoints(*self._given) if any(self._given) else full_random_checkpoints(self._report)
            self._source = load_source(paths, False, self._report)
        return self._source

    def params(self, method: bench.Method) -> bench.ParamCount:
        return _count(trained_parameters(self.source))

    def meta_params(self, method: bench.Method) -> bench.ParamCount:
        return _count(architecture_parameters(FULL_UNET, FULL_VAE, *RANKS["full"]))

    def reference(self, device: str, batch: int) -> S3DiffReference:
        return S3DiffReference(self.source.components, device=device, batch=batch)

    def options(self) -> S3DiffOptions:
        return S3DiffOptions()

    def large_tiles(self, section) -> int:
        from sr_runtime.families.s3diff.image_loop import Tiling

        return Tiling(bench.LARGE, bench.LARGE, section, self.options()).unet_tiles
