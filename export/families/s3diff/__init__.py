"""S3Diff (ArcticHare105/S3Diff: one-step x4 SR on SD-Turbo with a LoRA modulated per image by a degradation
estimate) on the export side: loaders of s3diff.pkl, de_net.pth and SD-Turbo, the modulated LoRA layers, the
PyTorch reference of the official inference, the graphs (the modulation kept live: they take deg_score), the
build plan, the Table 7 row and the command-line options."""

from __future__ import annotations

from sr_runtime.manifest import Manifest

from ... import cli_options as shared
from ...reporting import Report
from ..base import ExportFamily, ImageRunner, Options
from .merge_bench import merge_bench
from .options import CHECKPOINTS


class S3DiffExport(ExportFamily):
    name = "s3diff"
    title = "S3Diff"
    models = ("s3diff",)
    build_options = CHECKPOINTS
    reference_options = (*CHECKPOINTS, shared.DEVICE)
    bench_options = CHECKPOINTS
    bench_commands = (merge_bench,)

    def check_build(self, model: str, options: Options, tile: int) -> None:
        from .source import check_tile

        check_tile(tile)

    def source(self, model: str, options: Options, report: Report):
        from .source import resolve_source

        return resolve_source(options["sd_turbo"], options["checkpoint"], options["de_net"], report=report)

    def reference(self, model: str, options: Options, report: Report) -> ImageRunner:
        from sr_runtime.families.s3diff.cost import image_cost
        from sr_runtime.families.s3diff.options import S3DiffOptions

        from ...devices import check_torch_device
        from .reference import S3DiffReference
        from .source import resolve_source

        settings = S3DiffOptions(**self.run_values(options))  # bad options fail before anything is loaded
        check_torch_device(options["device"])
        source = resolve_source(options["sd_turbo"], options["checkpoint"], options["de_net"], allow_demo=False,
                                report=report)
        reference = S3DiffReference(source.components, device=options["device"])
        settings.check_vae(reference.section.vae_factor)
        return ImageRunner(lambda image, progress, per_image: reference.upscale(image, settings, progress),
                           lambda height, width: image_cost(height, width, reference.section, settings))

    def reference_source(self, manifest: Manifest, options: Options, report: Report):
        from .source import resolve_source

        ck = manifest.checkpoints
        return resolve_source(ck["sd_turbo"].path, ck["s3diff"].path, ck["de_net"].path, allow_demo=False,
                              report=report)

    def bench(self, options: Options, report: Report):
        from .bench import S3DiffBench

        # Resolved when the row is measured: table7 asks every family, and these options may be another's.
        return S3DiffBench(options["sd_turbo"], options["checkpoint"], options["de_net"], report=report)
