"""The x4 RRDBNet of Real-ESRGAN and BSRGAN on the export side: the network, its two release layouts,
the whole-image PyTorch reference, the one graph, the build plan, the Table 7 rows and the options."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from sr_runtime.manifest import Manifest

from ... import cli_options as shared
from ...reporting import Report
from ..base import DEFAULT_TILE, ExportFamily, ImageRunner, Options
from .layouts import LAYOUTS

if TYPE_CHECKING:
    from ...builders.backends import EngineBackend

OVERLAP = click.Option(["--overlap"], type=click.IntRange(0, shared.MAX_TILE), default=None,
                       help="LR px of context around each tile, cropped from its output (default 16).")
# On the CPU the engines take any size, and every tile recomputes its overlap ((128 / 96)^2 = 1.78x the work at
# tile 128): Table 7's 512-px LR image runs in one call. GPU profiles keep the tile small.
CPU_TILE = 512


def _overlap(options: Options) -> int:
    from .source import DEFAULT_OVERLAP

    return DEFAULT_OVERLAP if options["overlap"] is None else options["overlap"]


class RRDBNetExport(ExportFamily):
    name = "rrdbnet"
    title = "RRDBNet"
    models = LAYOUTS  # each its own checkpoint layout
    build_options = (shared.CHECKPOINT, OVERLAP)
    reference_options = (shared.CHECKPOINT, shared.DEVICE, shared.DTYPE)

    def default_tile(self, backend: EngineBackend) -> int:
        return CPU_TILE if backend.device == "cpu" else DEFAULT_TILE

    def check_build(self, model: str, options: Options, tile: int) -> None:
        from sr_runtime.crop_tiling import check_overlap

        check_overlap(tile, _overlap(options))

    def source(self, model: str, options: Options, report: Report):
        from .source import resolve_rrdbnet_source

        return resolve_rrdbnet_source(model, options["checkpoint"], _overlap(options), report=report)

    def reference(self, model: str, options: Options, report: Report) -> ImageRunner:
        from sr_runtime.precision import Precision

        from ...devices import check_torch_device
        from ...graph_spec import TORCH_DTYPES
        from .reference import RRDBNetReference
        from .source import resolve_rrdbnet_source

        check_torch_device(options["device"])
        source = resolve_rrdbnet_source(model, options["checkpoint"], allow_demo=False, report=report)
        reference = RRDBNetReference(source.components, options["device"], TORCH_DTYPES[Precision(options["dtype"])])
        return ImageRunner(lambda image, progress, per_image: reference.upscale(image, progress), reference.cost)

    def reference_source(self, manifest: Manifest, options: Options, report: Report):
        from .source import resolve_rrdbnet_source

        (model, record), = manifest.checkpoints.items()
        return resolve_rrdbnet_source(model, record.path, manifest.section.overlap, allow_demo=False, report=report)

    def bench(self, options: Options, report: Report):
        from .bench import RRDBNetBench

        return RRDBNetBench(report=report)
