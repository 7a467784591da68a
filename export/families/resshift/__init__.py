"""ResShift (zsyOAOA/ResShift, v1/v2 15 steps, v3 4 steps) and its one-step distillation SinSR
(wyf0912/SinSR) on the export side: loaders of the denoiser, the VQ-f4 autoencoder and the official
config, the PyTorch reference of the official samplers, the three graphs, the build plan, the Table 7
rows and the command-line options."""

from __future__ import annotations

import click

from sr_runtime.manifest import Manifest

from ... import cli_options as shared
from ...reporting import Report
from ..base import ExportFamily, ImageRunner, Options
from .official_configs import MODELS

AUTOENCODER = shared.path_option("--autoencoder", help="autoencoder_vq_f4.pth (default: ./weights/autoencoder_vq_f4.pth).")
CONFIG = shared.path_option("--config", help="The official YAML (model, autoencoder, diffusion params; default: the "
                                             "model's official config, built in).")
CHECKPOINTS = (shared.CHECKPOINT, AUTOENCODER, CONFIG)
ZERO_NOISE = click.Option(["--zero-noise"], is_flag=True, help="Every noise draw zero: the posterior means.")
CHOP_SIZE = click.Option(["--chop-size"], type=shared.TILE_PX, default=None,
                         help="LR px per patch (default: the bundle's tile; the PyTorch reference: the official 512).")
CHOP_STRIDE = click.Option(["--chop-stride"], type=shared.TILE_PX, default=None,
                           help="LR px between patches (default: 448 for 512, 224 for 256, 48 for 64, else 7/8 of the size).")


class ResShiftExport(ExportFamily):
    name = "resshift"
    title = "ResShift"
    models = tuple(MODELS)
    build_options = CHECKPOINTS
    reference_options = (*CHECKPOINTS, shared.DEVICE)
    image_options = (ZERO_NOISE, CHOP_SIZE, CHOP_STRIDE)

    def check_build(self, model: str, options: Options, tile: int) -> None:
        from sr_runtime.families.resshift.section import check_tile

        check_tile(tile)

    def source(self, model: str, options: Options, report: Report):
        from .source import resolve_source

        return resolve_source(model, options["checkpoint"], options["autoencoder"], options["config"], report=report)

    def reference(self, model: str, options: Options, report: Report) -> ImageRunner:
        from sr_runtime.families.resshift.options import ResShiftOptions

        from ...devices import check_torch_device
        from .reference import ResShiftReference
        from .source import resolve_source

        settings = ResShiftOptions(**self.run_values(options))  # checked before anything loads
        check_torch_device(options["device"])
        source = resolve_source(model, options["checkpoint"], options["autoencoder"], options["config"],
                                allow_demo=False, report=report)
        reference = ResShiftReference(source.components, device=options["device"])
        return ImageRunner(lambda image, progress, per_image: reference.upscale(image, settings, progress),
                           lambda height, width: reference.cost(height, width, settings))

    def reference_source(self, manifest: Manifest, options: Options, report: Report):
        from .source import manifest_source

        return manifest_source(manifest, report)

    def bench(self, options: Options, report: Report):
        from .bench import ResShiftBench

        return ResShiftBench(report=report)
