"""OSEDiff (cswry/OSEDiff: one-step x4 SR on SD-2.1-base with a static LoRA and DAPE prompts) on the export side:
loaders of osediff.pkl, SD-2.1-base, RAM and DAPE, the LoRA merged, the PyTorch reference of the official
inference, the graphs (tagger, text encoder, VAE encoder, UNet, VAE decoder, the tiled VAE's segments), the build
plan, the Table 7 row and the command-line options."""

from __future__ import annotations

from sr_runtime.manifest import Manifest

from ... import cli_options as shared
from ...reporting import Report
from ..base import ExportFamily, ImageRunner, Options
from .options import CHECKPOINTS, PROMPT


def _paths(options: Options) -> tuple:
    return options["sd21"], options["checkpoint"], options["ram"], options["dape"], options["ram_data"]


class OSEDiffExport(ExportFamily):
    name = "osediff"
    title = "OSEDiff"
    models = ("osediff",)
    build_options = CHECKPOINTS
    reference_options = (*CHECKPOINTS, shared.DEVICE)
    image_options = (PROMPT,)
    bench_options = CHECKPOINTS

    def check_build(self, model: str, options: Options, tile: int) -> None:
        from .source import check_tile

        check_tile(tile)

    def source(self, model: str, options: Options, report: Report):
        from .source import resolve_source

        return resolve_source(*_paths(options), report=report)

    def reference(self, model: str, options: Options, report: Report) -> ImageRunner:
        from sr_runtime.families.osediff.cost import image_cost
        from sr_runtime.families.osediff.options import OSEDiffOptions

        from ...devices import check_torch_device
        from .reference import OSEDiffReference
        from .source import resolve_source

        settings = OSEDiffOptions(**self.run_values(options))  # bad options fail before anything is loaded
        check_torch_device(options["device"])
        source = resolve_source(*_paths(options), allow_demo=False, report=report)
        reference = OSEDiffReference(source.components, device=options["device"])
        settings.check_vae(reference.section.vae_factor)
        return ImageRunner(lambda image, progress, per_image: reference.upscale(image, settings, progress),
                           lambda height, width: image_cost(height, width, reference.section, settings))

    def reference_source(self, manifest: Manifest, options: Options, report: Report):
        from pathlib import Path

        from .source import RECORDS, OSEDiffPaths, load_source

        ck = manifest.checkpoints
        return load_source(OSEDiffPaths(*(Path(ck[name].path) for name in RECORDS)), False, report)

    def bench(self, options: Options, report: Report):
        from .bench import OSEDiffBench

        # Resolved when the row is measured: table7 asks every family, and these options may be another's.
        return OSEDiffBench(*_paths(options), report=report)
