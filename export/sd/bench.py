"""What the one-step SD families' Table 7 rows share: the stage inputs, the engine row (end to end, its stages,
the large image, the variants) and the PyTorch rows' stage calls."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from sr_runtime.precision import Precision

from ..bench import family as bench
from ..bench.engines import bench_upscaler, variant_runs
from ..builders.backends import EngineBackend
from ..families.base import FamilySource
from ..graph_spec import GraphSpec
from ..reporting import Report


def bench_images() -> tuple[np.ndarray, np.ndarray]:
    """The Table 7 image (128 x 128) and the large one, the same for every row."""
    rng = np.random.default_rng(0)
    return rng.random((bench.TILE, bench.TILE, 3), dtype=np.float32), rng.random((bench.LARGE, bench.LARGE, 3),
                                                                                  dtype=np.float32)


def stage_inputs(source: FamilySource, graphs: tuple[GraphSpec, ...], precision: Precision
                 ) -> dict[str, tuple[torch.Tensor, ...]]:
    """Sample inputs of each graph at the Table 7 size."""
    plan = source.plan_build(bench.TILE, 1, lambda message: None)
    return {spec.name: spec.sample_inputs(plan.dims(1), precision) for spec in graphs}


def engine_runner(source: FamilySource, graphs: tuple[GraphSpec, ...], labels: dict[str, str], name: str,
                  backend: EngineBackend, precision: Precision, batch: int, report: Report,
                  large_tiles: Callable[[object], int]) -> bench.Runner:
    """The bundle's row: ``large_tiles(section)`` tells how many UNet tiles the large image takes."""
    image, large_image = bench_images()
    inputs = stage_inputs(source, graphs, precision)
    upscaler = bench_upscaler(source, backend, precision, bench.TILE, batch, name, report)
    stages = []
    for spec in graphs:
        feed = {t.name: x.numpy() for t, x in zip(spec.inputs, inputs[spec.name], strict=True)}
        stages.append(bench.Stage(labels[spec.name], lambda s=upscaler.sessions[spec.name], f=feed: s.run(f)))
    return bench.Runner(run=lambda: upscaler.upscale(image), stages=stages, large=lambda: upscaler.upscale(large_image),
                        large_tiles=large_tiles(upscaler.family.section),
                        variants=variant_runs(source, backend, precision, bench.TILE, name, report,
                                              lambda other: other.upscale(image)))


def torch_stages(modules: dict[str, nn.Module], inputs: dict[str, tuple[torch.Tensor, ...]], labels: dict[str, str],
                 device: str) -> list[bench.Stage]:
    """Each graph's module called on its sample inputs, as a timed stage of a PyTorch row."""
    stages = []
    for name, module in modules.items():
        args = tuple(x.to(device) for x in inputs[name])

        def call(module=module, args=args):
            with torch.inference_mode():
                return module(*args)

        stages.append(bench.Stage(labels[name], call))
    return stages


def reference_runner(reference, modules: dict[str, str], options: object, source: FamilySource,
                     graphs: tuple[GraphSpec, ...], labels: dict[str, str], mode: bench.TorchMode, device: str,
                     large_tiles: Callable[[object], int]) -> bench.Runner:
    """A PyTorch row of a one-step family's ``reference`` (its ``upscale(image, options)``); ``modules``: each graph's
    module, by the reference's attribute, compiled for torch.compile's row."""
    if mode is bench.TorchMode.COMPILE:
        for attribute in modules.values():
            setattr(reference, attribute, torch.compile(getattr(reference, attribute)))
    image, large_image = bench_images()
    stages = torch_stages({name: getattr(reference, attribute) for name, attribute in modules.items()},
                          stage_inputs(source, graphs, Precision.FP32), labels, device)
    return bench.Runner(run=lambda: reference.upscale(image, options), stages=stages,
                        large=lambda: reference.upscale(large_image, options),
                        large_tiles=large_tiles(reference.section))


class OneStepBench(bench.BenchFamily):
    """A one-step family's Table 7 row: its bundle's engines and its PyTorch reference at fp32 (what the official
    code of these families runs), also on the GPU, where the engines run fp16. A family gives its graphs, their
    labels and reference modules, its reference and options types, and ``source`` / ``params``."""

    graphs: tuple[GraphSpec, ...]
    labels: dict[str, str]  # graph -> stage label
    modules: dict[str, str]  # graph -> the reference's attribute holding its module

    @abstractmethod
    def reference(self, device: str, batch: int):
        """The family's PyTorch reference of ``source``'s components."""

    @abstractmethod
    def options(self):
        """The default per-image options (the official defaults)."""

    @abstractmethod
    def large_tiles(self, section) -> int:
        """How many UNet tiles the large image takes."""

    def backends(self, device: str) -> list[tuple[bench.BenchBackend, Precision]]:
        return [(backend, Precision.FP32 if isinstance(backend, bench.TorchMode) else precision)
                for backend, precision in super().backends(device)]

    def runner(self, method: bench.Method, backend: bench.BenchBackend, precision: Precision, device: str,
               batch: int) -> bench.Runner:
        if not isinstance(backend, bench.TorchMode):
            return engine_runner(self.source, self.graphs, self.labels, self.name, backend, precision, batch,
                                 self._report, self.large_tiles)
        if precision is not Precision.FP32:
            raise NotImplementedError(f"the {self.name} reference runs in fp32 (the official default)")
        return reference_runner(self.reference(device, batch), self.modules, self.options(), self.source, self.graphs,
                                self.labels, backend, device, self.large_tiles)
