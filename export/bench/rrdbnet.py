"""RealESRGAN and BSRGAN rows of Table 7: one x4 RRDBNet call per 128 -> 512 image."""

from __future__ import annotations

import numpy as np
import torch

from sr_runtime.backends.base import RuntimeOptions

from ..build.bundle_builder import BuildOptions, build_bundle
from ..models.rrdbnet import OFFICIAL_CONFIG, RRDBNet
from ..rrdbnet_source import RRDBNetSource
from ..sources import cache_root
from .family import BenchFamily, Method, ParamCount, Runner, Stage
from .invsr import LARGE, TILE, gpu_backends

ROWS = {"RealESRGAN": "realesrgan", "BSRGAN": "bsrgan"}
LARGE_TILES = 25  # 512 px at tile 128 with 16 px overlap: stride 96 -> 5 x 5


class RRDBNetBench(BenchFamily):
    """Both rows share the network (the same 16.7 M-parameter x4 RRDBNet); only the checkpoints differ."""

    name = "rrdbnet"
    methods = tuple(ROWS)

    def __init__(self, report=print):
        self._report = report
        self._module: RRDBNet | None = None
        self.weights = "random (full size)"

    @property
    def module(self) -> RRDBNet:
        if self._module is None:
            torch.manual_seed(0)
            self._module = RRDBNet(OFFICIAL_CONFIG).eval()
        return self._module

    def params(self, method: Method) -> ParamCount:
        return ParamCount(sum(p.numel() for p in self.module.parameters()) / 1e6, "the whole RRDBNet")

    def backends(self, device: str) -> list[tuple[str, str]]:
        return [("eager", "fp32"), ("onnxruntime-cpu", "fp32")] if device == "cpu" else gpu_backends()

    def runner(self, method: Method, backend: str, precision: str, device: str, batch: int) -> Runner:
        rng = np.random.default_rng(0)
        image = rng.random((TILE, TILE, 3), dtype=np.float32)
        large_image = rng.random((LARGE, LARGE, 3), dtype=np.float32)
        if backend in ("eager", "compile"):
            dtype = torch.float16 if precision == "fp16" else torch.float32
            module = self.module.to(device, dtype)
            if backend == "compile":
                module = torch.compile(module)
            lr = torch.from_numpy(image.transpose(2, 0, 1)[None].copy()).to(device, dtype)
            lr_large = torch.from_numpy(large_image.transpose(2, 0, 1)[None].copy()).to(device, dtype)

            def run(x=lr):
                with torch.inference_mode():
                    return module(x)

            return Runner(run=run, stages=[Stage("RRDBNet", run)], large=lambda: run(lr_large), large_tiles=1,
                          note="large image in one call, untiled")
        model = ROWS[method.name]
        source = RRDBNetSource(model, self.module.float(), demo=False,
                               checkpoints={model: {"path": "random weights", "sha256": {"seed": "0"}}})
        opts = BuildOptions(steps=0, cli_timesteps=(), backend=backend, precision=precision, tile=TILE, batch=batch,
                            output=cache_root() / "bench-bundles" / f"{model}-{backend}-{precision}-b{batch}")
        from sr_runtime.pipeline import Upscaler

        upscaler = Upscaler.from_bundle(build_bundle(source, opts, report=self._report), options=RuntimeOptions())
        session = upscaler.sessions["rrdbnet"]
        tile_in = {"lr": image.transpose(2, 0, 1)[None].copy()}
        return Runner(
            run=lambda: upscaler.upscale(image),
            stages=[Stage("RRDBNet", lambda: session.run(tile_in))],
            large=lambda: upscaler.upscale(large_image),
            large_tiles=LARGE_TILES,
        )

    def release(self, backend: str) -> None:
        if torch.cuda.is_available() and self._module is not None:
            self._module.to("cpu")
            torch.cuda.empty_cache()
