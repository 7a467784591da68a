"""The S3Diff-1 row of Table 7: one 128 -> 512 image end to end (the official defaults: no tiling at this size,
the wavelet colour fix), and its stages.

Parameters are counted the paper's way, what S3Diff trains: the LoRA of the UNet and of the VAE encoder, the
UNet's retrained conv_in, the modulation MLPs and the block embeddings; frozen SD-Turbo, the fixed Fourier
frequencies and the pretrained DEResNet are excluded (as InvSR's row counts its noise predictor only).
"""

from __future__ import annotations

import numpy as np
import torch

from sr_runtime.families.s3diff.options import S3DiffOptions
from sr_runtime.precision import Precision

from ...bench import family as bench
from ...bench.engines import bench_upscaler, variant_runs
from ...cache import cache_root, cached_folder
from ...reporting import Report
from .graphs import GRAPHS
from .locate import S3DiffPaths, find_checkpoints
from .lora import ModulatedLoRA
from .reference import S3DiffReference
from .source import S3DiffSource, load_source

STAGE_LABELS = {"degradation": "DEResNet", "vae_encoder": "VAE encoder", "unet": "UNet (CFG batch 2)",
                "vae_decoder": "VAE decoder"}


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


class S3DiffBench(bench.BenchFamily):
    name = "s3diff"
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
        return bench.ParamCount(trained_parameters(self.source) / 1e6,
                                "what S3Diff trains: UNet and VAE-encoder LoRA, UNet conv_in, modulation MLPs and block "
                                "embeddings (SD-Turbo and DEResNet frozen)")

    def backends(self, device: str) -> list[tuple[bench.BenchBackend, Precision]]:
        # PyTorch rows at the official precision (fp32, what users of S3Diff's code run), also on the GPU, where
        # the engines run fp16 as everywhere in Table 7.
        return [(backend, Precision.FP32 if isinstance(backend, bench.TorchMode) else precision)
                for backend, precision in super().backends(device)]

    def _stage_inputs(self, precision: Precision) -> dict[str, tuple[torch.Tensor, ...]]:
        plan = self.source.plan_build(bench.TILE, 1, lambda message: None)
        return {spec.name: spec.sample_inputs(plan.dims(1), precision) for spec in GRAPHS}

    def runner(self, method: bench.Method, backend: bench.BenchBackend, precision: Precision, device: str,
               batch: int) -> bench.Runner:
        rng = np.random.default_rng(0)
        image = rng.random((bench.TILE, bench.TILE, 3), dtype=np.float32)
        large_image = rng.random((bench.LARGE, bench.LARGE, 3), dtype=np.float32)
        inputs = self._stage_inputs(precision)
        if isinstance(backend, bench.TorchMode):
            return self._torch_runner(backend, precision, device, batch, image, large_image, inputs)
        upscaler = bench_upscaler(self.source, backend, precision, bench.TILE, batch, "s3diff", self._report)
        stages = []
        for spec in GRAPHS:
            feed = {t.name: x.numpy() for t, x in zip(spec.inputs, inputs[spec.name], strict=True)}
            stages.append(bench.Stage(STAGE_LABELS[spec.name], lambda s=upscaler.sessions[spec.name], f=feed: s.run(f)))
        return bench.Runner(run=lambda: upscaler.upscale(image), stages=stages, large=lambda: upscaler.upscale(large_image),
                            large_tiles=_large_tiles(upscaler.family.section),
                            variants=variant_runs(self.source, backend, precision, bench.TILE, "s3diff", self._report,
                                                  lambda other: other.upscale(image)))

    def _torch_runner(self, mode: bench.TorchMode, precision: Precision, device: str, batch: int, image, large_image,
                      inputs) -> bench.Runner:
        if precision is not Precision.FP32:
            raise NotImplementedError("the S3Diff reference runs in fp32 (the official default)")
        reference = S3DiffReference(self.source.components, device=device, batch=batch)
        modules = {"degradation": reference.degradation, "vae_encoder": reference.encoder, "unet": reference.unet,
                   "vae_decoder": reference.decoder}
        if mode is bench.TorchMode.COMPILE:
            modules = {name: torch.compile(module) for name, module in modules.items()}
            reference.degradation, reference.encoder = modules["degradation"], modules["vae_encoder"]
            reference.unet, reference.decoder = modules["unet"], modules["vae_decoder"]
        stages = []
        for name, module in modules.items():
            args = tuple(x.to(device) for x in inputs[name])

            def call(module=module, args=args):
                with torch.inference_mode():
                    return module(*args)

            stages.append(bench.Stage(STAGE_LABELS[name], call))
        return bench.Runner(run=lambda: reference.upscale(image, S3DiffOptions()), stages=stages,
                            large=lambda: reference.upscale(large_image, S3DiffOptions()),
                            large_tiles=_large_tiles(reference.section))


def _large_tiles(section) -> int:
    from sr_runtime.families.s3diff.image_loop import Tiling

    return Tiling(bench.LARGE, bench.LARGE, section, S3DiffOptions()).unet_tiles
