"""RealESRGAN and BSRGAN rows of Table 7: one x4 RRDBNet call per 128 -> 512 image."""

from __future__ import annotations

import numpy as np
import torch

from sr_runtime.crop_tiling import crop_cost
from sr_runtime.manifest import CheckpointRecord
from sr_runtime.precision import Precision

from ...bench import family as bench
from ...bench.engines import bench_upscaler, variant_runs
from ...graph_spec import TORCH_DTYPES
from ...reporting import Report
from . import RRDBNetExport
from .layouts import BSRGAN, REALESRGAN
from .model import OFFICIAL_CONFIG, RRDBNet
from .source import RRDBNetSource

ROWS = {"RealESRGAN": REALESRGAN, "BSRGAN": BSRGAN}


def _count(module: RRDBNet) -> bench.ParamCount:
    return bench.ParamCount(sum(p.numel() for p in module.parameters()) / 1e6, "the whole RRDBNet")


class RRDBNetBench(bench.BenchFamily):
    """Both rows share the network (the same 16.7 M-parameter x4 RRDBNet); only the checkpoints differ."""

    name = "rrdbnet"
    methods = dict.fromkeys(ROWS, 0)
    weights = "random (full size)"

    def __init__(self, report: Report = print):
        self._report = report
        self._module: RRDBNet | None = None

    @property
    def module(self) -> RRDBNet:
        if self._module is None:
            torch.manual_seed(0)
            self._module = RRDBNet(OFFICIAL_CONFIG).eval()
        return self._module

    def params(self, method: bench.Method) -> bench.ParamCount:
        return _count(self.module)

    def meta_params(self, method: bench.Method) -> bench.ParamCount:
        with torch.device("meta"):
            return _count(RRDBNet(OFFICIAL_CONFIG))

    def runner(self, method: bench.Method, backend: bench.BenchBackend, precision: Precision, device: str,
               batch: int) -> bench.Runner:
        rng = np.random.default_rng(0)
        image = rng.random((bench.TILE, bench.TILE, 3), dtype=np.float32)
        large_image = rng.random((bench.LARGE, bench.LARGE, 3), dtype=np.float32)
        if isinstance(backend, bench.TorchMode):
            dtype = TORCH_DTYPES[precision]
            module = self.module.to(device, dtype)
            if backend is bench.TorchMode.COMPILE:
                module = torch.compile(module)
            lr = torch.from_numpy(image.transpose(2, 0, 1)[None].copy()).to(device, dtype)
            lr_large = torch.from_numpy(large_image.transpose(2, 0, 1)[None].copy()).to(device, dtype)

            def run(x=lr):
                with torch.inference_mode():
                    return module(x)

            return bench.Runner(run=run, stages=[bench.Stage("RRDBNet", run)], large=lambda: run(lr_large), large_tiles=1,
                          note="large image in one call, untiled")
        model = ROWS[method.name]
        source = RRDBNetSource(model, self.module.float(), demo=False,
                               checkpoints={model: CheckpointRecord("random weights", {"seed": "0"})})
        tile = RRDBNetExport().default_tile(backend)  # the tile `sr-export build` picks for this backend
        upscaler = bench_upscaler(source, backend, precision, tile, batch, model, self._report)
        session = upscaler.sessions["rrdbnet"]
        tile_in = {"lr": image.transpose(2, 0, 1)[None].copy()}
        return bench.Runner(
            run=lambda: upscaler.upscale(image),
            stages=[bench.Stage("RRDBNet", lambda: session.run(tile_in))],
            large=lambda: upscaler.upscale(large_image),
            large_tiles=crop_cost(bench.LARGE, bench.LARGE, tile, source.overlap).tiles,
            variants=variant_runs(source, backend, precision, tile, model, self._report,
                                  lambda other: other.upscale(image)),
        )
