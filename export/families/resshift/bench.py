"""ResShift-4 (v3), SinSR-1 and ResShift-15 (v1) rows of Table 7: one 128 -> 512 patch, the paper's setting
(a 128x128 latent, no padding, no chopping), with the default seeded noise.

Parameters are counted the paper's way: the denoiser only (118,593,583 with the official config); the
frozen VQ autoencoder is excluded, as InvSR's row counts only its noise predictor.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from sr_runtime.backends.base import LR_FEED
from sr_runtime.families.resshift.chain import PRIOR_NOISE, step_noise
from sr_runtime.families.resshift.graphs import GRAPHS, UNET_STEP
from sr_runtime.families.resshift.image_loop import batch_feeds, plan_patches
from sr_runtime.families.resshift.noise import DEFAULT_SEED, PatchNoise
from sr_runtime.families.resshift.options import Chopping, ResShiftOptions, default_stride
from sr_runtime.families.resshift.section import ResShiftSection
from sr_runtime.graph_io import GraphIO
from sr_runtime.precision import Precision

from ...bench import family as bench
from ...bench.engines import bench_upscaler, variant_runs
from ...cache import cache_root, cached_folder
from ...graph_spec import TORCH_DTYPES
from ...reporting import Report
from .config import load_config
from .official_configs import MODELS
from .reference import ResShiftReference
from .source import ResShiftSource, resolve_source
from .unet import UNetModelSwin

ROWS = {"ResShift-4": "resshift-v3", "SinSR-1": "sinsr", "ResShift-15": "resshift-v1"}
STAGE_LABELS = {"vq_encoder": "VQ encoder", "unet_step": "UNet step", "vq_decoder": "VQ decoder"}
# Checkpoints per model: (denoiser, autoencoder, config or None for the built-in official one).
Checkpoints = dict[str, tuple[Path, Path, Path | None]]


def full_random_checkpoints(report: Report) -> Checkpoints:
    """One full-size random denoiser and autoencoder in the official formats, cached: the three models share
    the architecture, so each row loads them with its own official config."""
    from .random_checkpoints import write_random_model

    folder = cached_folder(cache_root() / "bench-checkpoints" / "resshift-full-seed0",
                           lambda tmp: write_random_model(tmp, "resshift-v3", seed=0, size="full"), report,
                           "full-size random-weight ResShift checkpoints")
    denoiser = folder / MODELS["resshift-v3"].checkpoint
    return {model: (denoiser, folder / "autoencoder_vq_f4.pth", None) for model in ROWS.values()}


def stage_inputs(section: ResShiftSection, feeds: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Each graph's inputs for one patch batch: the prior, the first UNet call, the decoder."""
    scalar = lambda value: np.array([value], np.float32)  # noqa: E731
    lr, noise = feeds[LR_FEED], feeds[PRIOR_NOISE]
    first = {name: scalar(value) for name, value in asdict(section.steps[0]).items()}
    step_draw = feeds.get(step_noise(0), np.zeros_like(noise))
    return {
        "vq_encoder": {"lr": lr, "noise": noise, "prior_scale": scalar(section.prior_scale)},
        "unet_step": {"latent": noise, "lr": lr, **first, "noise": step_draw},
        "vq_decoder": {"latent": noise},
    }


def _count(unet: torch.nn.Module) -> bench.ParamCount:
    return bench.ParamCount(sum(p.numel() for p in unet.parameters()) / 1e6,
                            "the denoiser only (the frozen VQ autoencoder excluded: the paper's rule)")


class ResShiftBench(bench.BenchFamily):
    name = "resshift"
    methods = {"ResShift-4": 4, "SinSR-1": 1, "ResShift-15": 15}

    def __init__(self, checkpoints: Checkpoints | None = None, report: Report = print):
        self._checkpoints = checkpoints
        self._report = report
        self._sources: dict[str, ResShiftSource] = {}
        self.weights = "checkpoints" if checkpoints else "random (full size)"

    def source(self, method: bench.Method) -> ResShiftSource:
        model = ROWS[method.name]
        if model not in self._sources:
            checkpoints = self._checkpoints or full_random_checkpoints(self._report)
            self._sources[model] = resolve_source(model, *checkpoints[model], allow_demo=False, report=self._report)
        return self._sources[model]

    def params(self, method: bench.Method) -> bench.ParamCount:
        return _count(self.source(method).components.unet)

    def meta_params(self, method: bench.Method) -> bench.ParamCount:
        with torch.device("meta"):
            return _count(UNetModelSwin(load_config(MODELS[ROWS[method.name]]).unet))

    def backends(self, device: str) -> list[tuple[bench.BenchBackend, Precision]]:
        # A bf16 build is refused (the plan's bf16_problem: the VQ codebook lookup).
        return [(backend, p) for backend, p in super().backends(device) if p is not Precision.BF16]

    def runner(self, method: bench.Method, backend: bench.BenchBackend, precision: Precision, device: str,
               batch: int) -> bench.Runner:
        source = self.source(method)
        section = source.components.section()
        rng = np.random.default_rng(0)
        lr = rng.random((1, 3, bench.TILE, bench.TILE), dtype=np.float32)
        feeds = batch_feeds(lr, PatchNoise(DEFAULT_SEED, len(section.steps) + 1), section)
        inputs = stage_inputs(section, feeds)
        large_image = rng.random((bench.LARGE, bench.LARGE, 3), dtype=np.float32)
        chopping = Chopping(bench.TILE, default_stride(bench.TILE))
        large_tiles = len(plan_patches(bench.LARGE, bench.LARGE, chopping, section.pad_multiple).starts)
        options = ResShiftOptions(chop_size=chopping.size)
        if isinstance(backend, bench.TorchMode):
            reference = ResShiftReference(source.components, device=device, dtype=TORCH_DTYPES[precision])
            if backend is bench.TorchMode.COMPILE:
                reference.encoder, reference.step, reference.decoder = (
                    torch.compile(m) for m in (reference.encoder, reference.step, reference.decoder))
            modules = {"vq_encoder": reference.encoder, "unet_step": reference.step, "vq_decoder": reference.decoder}

            def stage(io: GraphIO):
                # Scalars stay fp32 in every precision (TensorIO.scalar), as in the graphs.
                args = {t.name: torch.from_numpy(inputs[io.name][t.name]).to(device, TORCH_DTYPES[t.precision(precision)])
                        for t in io.inputs}

                def call(module=modules[io.name], args=args):
                    with torch.inference_mode():
                        return module(**args)

                return call

            stages = [bench.Stage(STAGE_LABELS[io.name], stage(io), len(section.steps) if io is UNET_STEP else 1)
                      for io in GRAPHS]
            return bench.Runner(run=lambda: reference.run_batch(feeds), stages=stages,
                                large=lambda: reference.upscale(large_image, options), large_tiles=large_tiles)
        upscaler = bench_upscaler(source, backend, precision, bench.TILE, batch, source.name, self._report)
        stages = [bench.Stage(STAGE_LABELS[io.name], lambda s=upscaler.sessions[io.name], f=inputs[io.name]: s.run(f),
                              len(section.steps) if io is UNET_STEP else 1) for io in GRAPHS]

        def run_patch(any_upscaler) -> object:  # the default bundle or a variant's
            return any_upscaler.run_tiles(*(feeds[n] for n in any_upscaler.family.feeds))

        return bench.Runner(
            run=lambda: run_patch(upscaler),
            stages=stages,
            large=lambda: upscaler.upscale(large_image, chop_size=chopping.size),
            large_tiles=large_tiles,
            variants=variant_runs(source, backend, precision, bench.TILE, source.name, self._report, run_patch),
        )

    def release(self, backend: bench.BenchBackend) -> None:
        if isinstance(backend, bench.TorchMode) and torch.cuda.is_available():
            for source in self._sources.values():
                source.components.unet.to("cpu")
                source.components.vq.to("cpu")
            torch.cuda.empty_cache()
