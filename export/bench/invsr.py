"""InvSR rows of Table 7 (InvSR-1/3/5: the paper's Table 1 timestep sets, which are the defaults)."""

from __future__ import annotations

import numpy as np
import torch

from sr_runtime.backends.base import RuntimeOptions
from sr_runtime.upscale import UpscaleSettings, latent_shape

from ..build.bundle_builder import BuildOptions, build_bundle
from ..build.select import cuda_ep_problem, tensorrt_problem
from ..graphs import INVSR_GRAPHS, sizes
from ..reference import DTYPES, InvSRReference
from ..schedule import DEFAULT_TIMESTEPS, build_schedule
from ..sources import ModelSource, cache_root, resolve_source
from .family import BenchFamily, Method, ParamCount, Runner, Stage

TILE = 128
LARGE = 512  # LR side of the throughput image (-> 2048)
STAGE_LABELS = {
    "vae_encoder": "VAE encoder",
    "noise_predictor": "noise predictor",
    "unet_step": "UNet step",
    "vae_decoder": "VAE decoder",
}


def gpu_backends() -> list[tuple[str, str]]:
    """fp16 everywhere on the GPU (the paper's setting); engines only where their runtime is usable."""
    found = [("eager", "fp16"), ("compile", "fp16")]
    if cuda_ep_problem() is None:
        found.append(("onnxruntime-cuda", "fp16"))
    if tensorrt_problem() is None:
        found.append(("tensorrt", "fp16"))
    return found


def full_random_checkpoints(report) -> tuple:
    """Full-width SD-Turbo and noise predictor with random weights, in the official formats, cached."""
    from ..bundle import atomic_folder
    from ..tiny_checkpoints import write_tiny_noise_predictor, write_tiny_sd_turbo

    folder = cache_root() / "bench-checkpoints" / "full-seed0"
    if not (folder / "complete").is_file():
        report(f"writing full-size random-weight InvSR checkpoints to {folder} (once)")
        with atomic_folder(folder) as tmp:
            write_tiny_sd_turbo(tmp / "sd-turbo", seed=0, size="full")
            write_tiny_noise_predictor(tmp / "noise-predictor", seed=0, size="full")
            (tmp / "complete").write_text("ok\n")
    np_folder = folder / "noise-predictor"
    return folder / "sd-turbo", next(np_folder.glob("*.pth")), next(np_folder.glob("*.yaml"))


class InvSRBench(BenchFamily):
    name = "invsr"
    methods = ("InvSR-1", "InvSR-3", "InvSR-5")

    def __init__(self, checkpoints: tuple | None = None, report=print):
        self._checkpoints = checkpoints
        self._report = report
        self._source: ModelSource | None = None
        self._random = checkpoints is None

    @property
    def source(self) -> ModelSource:
        if self._source is None:
            sd, pth, config = self._checkpoints or full_random_checkpoints(self._report)
            self._source = resolve_source(sd, pth, config, allow_demo=False, report=self._report)
        return self._source

    @property
    def weights(self) -> str:
        return "random (full size)" if self._random else "checkpoints"

    def params(self, method: Method) -> ParamCount:
        count = sum(p.numel() for p in self.source.components.noise_predictor.parameters())
        return ParamCount(count / 1e6, "noise predictor only (SD-Turbo is frozen: the paper's rule)")

    def backends(self, device: str) -> list[tuple[str, str]]:
        return [("eager", "fp32"), ("onnxruntime-cpu", "fp32")] if device == "cpu" else gpu_backends()

    def _inputs(self, precision: str):
        """Each graph's sample inputs for one tile, the same for every backend."""
        embed = self.source.components.sd_turbo.text_encoder.config.hidden_size
        return {s.name: s.sample_inputs(sizes(1, TILE, embed), precision) for s in INVSR_GRAPHS}

    def runner(self, method: Method, backend: str, precision: str, device: str, batch: int) -> Runner:
        schedule = build_schedule(self.source.components.scheduler_config, DEFAULT_TIMESTEPS[method.steps])
        rng = np.random.default_rng(0)
        lr = rng.random((1, 3, TILE, TILE), dtype=np.float32)
        zeros = np.zeros(latent_shape(1, TILE), np.float32)
        large_image = rng.random((LARGE, LARGE, 3), dtype=np.float32)
        large_tiles = 49  # 512 px at tile 128, stride 64: 7 x 7
        if backend in ("eager", "compile"):
            return self._torch_runner(schedule, backend, precision, device, batch, lr, zeros, large_image, large_tiles)
        opts = BuildOptions(
            steps=method.steps, cli_timesteps=schedule.cli_timesteps, backend=backend, precision=precision,
            tile=TILE, batch=batch,
            output=cache_root() / "bench-bundles" / f"invsr-s{method.steps}-{backend}-{precision}-b{batch}",
        )
        from sr_runtime.pipeline import Upscaler

        bundle = build_bundle(self.source, opts, report=self._report)
        upscaler = Upscaler.from_bundle(bundle, options=RuntimeOptions())
        inputs = self._inputs(precision)
        stages = []
        for spec in INVSR_GRAPHS:
            feed = {t.name: x.numpy() for t, x in zip(spec.inputs, inputs[spec.name], strict=True)}
            session = upscaler.sessions[spec.name]
            stages.append(Stage(STAGE_LABELS[spec.name], lambda s=session, f=feed: s.run(f),
                                method.steps if spec.name == "unet_step" else 1))
        return Runner(
            run=lambda: upscaler.run_tiles(lr, zeros, zeros),
            stages=stages,
            large=lambda: upscaler.upscale(large_image),
            large_tiles=large_tiles,
            note="stages timed through host arrays" if backend != "onnxruntime-cpu" else "",
        )

    def _torch_runner(self, schedule, backend, precision, device, batch, lr, zeros, large_image, large_tiles) -> Runner:
        reference = InvSRReference(self.source.components, schedule, device=device, dtype=DTYPES[precision])
        modules = {
            "vae_encoder": reference.encoder,
            "noise_predictor": reference.predictor,
            "unet_step": reference.unet_step,
            "vae_decoder": reference.decoder,
        }
        if backend == "compile":
            for name, module in modules.items():
                modules[name] = torch.compile(module)
            reference.encoder, reference.predictor = modules["vae_encoder"], modules["noise_predictor"]
            reference.unet_step, reference.decoder = modules["unet_step"], modules["vae_decoder"]
        inputs = self._inputs(precision)
        stages = []
        for spec in INVSR_GRAPHS:
            args = tuple(x.to(device) for x in inputs[spec.name])
            # The noise predictor runs under autocast in the official fp16 pipeline, as in the reference.
            autocast = reference._autocast if spec.name == "noise_predictor" else torch.inference_mode

            def call(module=modules[spec.name], args=args, autocast=autocast):
                with torch.inference_mode(), autocast():
                    return module(*args)

            stages.append(Stage(STAGE_LABELS[spec.name], call, schedule.steps if spec.name == "unet_step" else 1))
        settings = UpscaleSettings(tile=TILE, batch=batch)
        return Runner(
            run=lambda: reference.run_tiles(lr, zeros, zeros),
            stages=stages,
            large=lambda: reference.upscale(large_image, settings),
            large_tiles=large_tiles,
        )

    def release(self, backend: str) -> None:
        if backend in ("eager", "compile") and torch.cuda.is_available():
            self.source.components.sd_turbo.unet.to("cpu")
            self.source.components.sd_turbo.vae.to("cpu")
            self.source.components.noise_predictor.to("cpu")
            torch.cuda.empty_cache()
