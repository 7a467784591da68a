"""InvSR rows of Table 7 (InvSR-1/3/5: the paper's Table 1 timestep sets, which are the defaults)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sr_runtime.families.invsr.image_loop import UpscaleSettings
from sr_runtime.precision import Precision

from ...bench import family as bench
from ...bench.engines import bench_upscaler, variant_runs
from ...cache import cache_root, cached_folder
from ...graph_spec import TORCH_DTYPES
from ...reporting import Report
from .graphs import GRAPHS
from .noise_predictor import OFFICIAL_CONFIG, build_noise_predictor
from .reference import InvSRReference
from .schedule import DEFAULT_TIMESTEPS, build_schedule
from .source import InvSRSource, resolve_source

STAGE_LABELS = {
    "vae_encoder": "VAE encoder",
    "noise_predictor": "noise predictor",
    "unet_step": "UNet step",
    "vae_decoder": "VAE decoder",
}
LARGE_TILES = 49  # 512 px at tile 128, stride 64: 7 x 7


def full_random_checkpoints(report: Report) -> tuple[Path, Path, Path]:
    """Full-width SD-Turbo and noise predictor with random weights, in the official formats, cached."""
    from .random_checkpoints import write_random_noise_predictor, write_random_sd_turbo

    def write(folder: Path) -> None:
        write_random_sd_turbo(folder / "sd-turbo", seed=0, size="full")
        write_random_noise_predictor(folder / "noise-predictor", seed=0, size="full")

    folder = cached_folder(cache_root() / "bench-checkpoints" / "full-seed0", write, report,
                           "full-size random-weight InvSR checkpoints")
    np_folder = folder / "noise-predictor"
    return folder / "sd-turbo", next(np_folder.glob("*.pth")), next(np_folder.glob("*.yaml"))


def _count(noise_predictor: torch.nn.Module) -> bench.ParamCount:
    return bench.ParamCount(sum(p.numel() for p in noise_predictor.parameters()) / 1e6,
                            "noise predictor only (SD-Turbo is frozen: the paper's rule)")


class InvSRBench(bench.BenchFamily):
    name = "invsr"
    methods = {f"InvSR-{steps}": steps for steps in (1, 3, 5)}

    def __init__(self, checkpoints: tuple | None = None, report: Report = print):
        self._checkpoints = checkpoints
        self._report = report
        self._source: InvSRSource | None = None
        self.weights = "checkpoints" if checkpoints else "random (full size)"

    @property
    def source(self) -> InvSRSource:
        if self._source is None:
            sd, pth, config = self._checkpoints or full_random_checkpoints(self._report)
            self._source = resolve_source(sd, pth, config, (DEFAULT_TIMESTEPS[1],), allow_demo=False,
                                          report=self._report)
        return self._source

    def params(self, method: bench.Method) -> bench.ParamCount:
        return _count(self.source.components.noise_predictor)

    def meta_params(self, method: bench.Method) -> bench.ParamCount:
        with torch.device("meta"):
            return _count(build_noise_predictor(OFFICIAL_CONFIG))

    def _inputs(self, precision: Precision) -> dict[str, tuple]:
        """Each graph's sample inputs for one tile, the same for every backend."""
        plan = self.source.plan_build(bench.TILE, 1, lambda message: None)
        return {s.name: s.sample_inputs(plan.dims(1), precision) for s in GRAPHS}

    def runner(self, method: bench.Method, backend: bench.BenchBackend, precision: Precision, device: str,
               batch: int) -> bench.Runner:
        source = self.source.with_groups(DEFAULT_TIMESTEPS[method.steps])
        rng = np.random.default_rng(0)
        lr = rng.random((1, 3, bench.TILE, bench.TILE), dtype=np.float32)
        zeros = np.zeros(source.components.geometry.latent_shape(1, bench.TILE), np.float32)
        large_image = rng.random((bench.LARGE, bench.LARGE, 3), dtype=np.float32)
        if isinstance(backend, bench.TorchMode):
            return self._torch_runner(source, backend, precision, device, batch, lr, zeros, large_image)
        upscaler = bench_upscaler(source, backend, precision, bench.TILE, batch, f"invsr-s{method.steps}", self._report)
        inputs = self._inputs(precision)
        stages = []
        for spec in GRAPHS:
            feed = {t.name: x.numpy() for t, x in zip(spec.inputs, inputs[spec.name], strict=True)}
            session = upscaler.sessions[spec.name]
            stages.append(bench.Stage(STAGE_LABELS[spec.name], lambda s=session, f=feed: s.run(f),
                                method.steps if spec.name == "unet_step" else 1))
        return bench.Runner(
            run=lambda: upscaler.run_tiles(lr, zeros, zeros),
            stages=stages,
            large=lambda: upscaler.upscale(large_image),
            large_tiles=LARGE_TILES,
            variants=variant_runs(source, backend, precision, bench.TILE, f"invsr-s{method.steps}", self._report,
                                  lambda other: other.run_tiles(lr, zeros, zeros)),
        )

    def _torch_runner(self, source: InvSRSource, mode: bench.TorchMode, precision: Precision, device: str, batch: int,
                      lr, zeros, large_image) -> bench.Runner:
        schedule = build_schedule(source.components.scheduler_config, source.groups[0])
        reference = InvSRReference(source.components, schedule, device=device, dtype=TORCH_DTYPES[precision])
        modules = {
            "vae_encoder": reference.encoder,
            "noise_predictor": reference.predictor,
            "unet_step": reference.unet_step,
            "vae_decoder": reference.decoder,
        }
        if mode is bench.TorchMode.COMPILE:
            for name, module in modules.items():
                modules[name] = torch.compile(module)
            reference.encoder, reference.predictor = modules["vae_encoder"], modules["noise_predictor"]
            reference.unet_step, reference.decoder = modules["unet_step"], modules["vae_decoder"]
        inputs = self._inputs(precision)
        stages = []
        for spec in GRAPHS:
            args = tuple(x.to(device) for x in inputs[spec.name])
            # The noise predictor runs under autocast in the official fp16 pipeline, as in the reference.
            autocast = reference._autocast if spec.name == "noise_predictor" else torch.inference_mode

            def call(module=modules[spec.name], args=args, autocast=autocast):
                with torch.inference_mode(), autocast():
                    return module(*args)

            stages.append(bench.Stage(STAGE_LABELS[spec.name], call, schedule.steps if spec.name == "unet_step" else 1))
        settings = UpscaleSettings(tile=bench.TILE, batch=batch)
        return bench.Runner(
            run=lambda: reference.run_tiles(lr, zeros, zeros),
            stages=stages,
            large=lambda: reference.upscale(large_image, settings),
            large_tiles=LARGE_TILES,
        )
