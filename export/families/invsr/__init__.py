"""InvSR (arbitrary-step x4 SR by diffusion inversion, zsyOAOA/InvSR) on the export side: loaders of
the noise predictor and SD-Turbo, the PyTorch reference of the official sampler, the four graphs, the
build plan, the Table 7 rows and the command-line options."""

from __future__ import annotations

from pathlib import Path

import click

from sr_runtime.manifest import Manifest

from ... import cli_options as shared
from ...reporting import Report
from ..base import ExportFamily, ImageRunner, Options

STEPS = click.Option(["--steps"], type=int, default=None,
                     help="Sampling steps (default: as many as --timesteps gives, else 1); 1-5 take the official "
                          "timesteps, more need --timesteps.")
TIMESTEPS = click.Option(["--timesteps"], multiple=True,
                         help="Descending timesteps, e.g. '200,100' (default: the official set).")
NOISE_PREDICTOR = shared.path_option("--noise-predictor", help="noise_predictor_sd_turbo_v5.pth")
NOISE_PREDICTOR_CONFIG = shared.path_option(
    "--noise-predictor-config", help="Official sampler YAML (model_start.params) or a flat YAML/JSON of the same keys.")
CHECKPOINTS = (shared.SD_TURBO, NOISE_PREDICTOR, NOISE_PREDICTOR_CONFIG)


def _cli_timesteps(options: Options) -> tuple[int, ...]:
    from .schedule import parse_timesteps, resolve_timesteps

    timesteps = parse_timesteps(options["timesteps"])
    steps = options["steps"] if options["steps"] is not None else len(timesteps or (1,))
    return resolve_timesteps(steps, timesteps)


class InvSRExport(ExportFamily):
    name = "invsr"
    title = "InvSR"
    models = ("invsr",)
    build_options = (STEPS, TIMESTEPS, *CHECKPOINTS)
    reference_options = (STEPS, TIMESTEPS, *CHECKPOINTS, shared.REFERENCE_TILE, shared.REFERENCE_BATCH,
                         shared.DEVICE, shared.DTYPE)
    run_options = (shared.COLOR_FIX, shared.SEED)
    compare_options = (shared.path_option(
        "--noise-predictor-config",
        help="The config the bundle was built with, to build the reference (default: the YAML beside the .pth)."),)
    bench_options = CHECKPOINTS

    def check_build(self, model: str, options: Options, tile: int) -> None:
        from sr_runtime.families.invsr.section import check_tile_size

        _cli_timesteps(options)
        check_tile_size(tile)

    def source(self, model: str, options: Options, report: Report):
        from .source import resolve_source

        return resolve_source(options["sd_turbo"], options["noise_predictor"], options["noise_predictor_config"],
                              _cli_timesteps(options), report=report)

    def reference(self, model: str, options: Options, report: Report) -> ImageRunner:
        from sr_runtime.families.invsr.image_loop import UpscaleSettings, image_cost
        from sr_runtime.precision import Precision

        from ...devices import check_torch_device
        from ...graph_spec import TORCH_DTYPES
        from .reference import InvSRReference
        from .schedule import build_schedule
        from .source import resolve_source

        settings = UpscaleSettings(tile=options["tile"], batch=options["batch"], color_fix=options["color_fix"],
                                   seed=options["seed"])
        check_torch_device(options["device"])
        source = resolve_source(options["sd_turbo"], options["noise_predictor"], options["noise_predictor_config"],
                                _cli_timesteps(options), allow_demo=False, report=report)
        schedule = build_schedule(source.components.scheduler_config, source.cli_timesteps)
        report(f"timesteps {list(schedule.cli_timesteps)}, sigmas {[round(s, 6) for s in schedule.sigmas]}")
        reference = InvSRReference(source.components, schedule, device=options["device"],
                                   dtype=TORCH_DTYPES[Precision(options["dtype"])])
        geometry = source.components.geometry
        return ImageRunner(lambda image, progress: reference.upscale(image, settings, progress),
                           lambda height, width: image_cost(height, width, settings.tile, geometry, settings.color_fix))

    def reference_source(self, manifest: Manifest, options: Options, report: Report):
        from .source import resolve_source

        ck = manifest.checkpoints
        np_path = Path(ck["noise_predictor"].path)
        config = options["noise_predictor_config"] or next(np_path.parent.glob("*.yaml"), None)
        return resolve_source(ck["sd_turbo"].path, np_path, config, tuple(manifest.section.cli_timesteps),
                              allow_demo=False, report=report)

    def bench(self, options: Options, report: Report):
        from .bench import InvSRBench
        from .locate import find_checkpoints

        checkpoints = None
        if options["sd_turbo"] or options["noise_predictor"]:
            checkpoints = (*find_checkpoints(options["sd_turbo"], options["noise_predictor"]),
                           options["noise_predictor_config"])
        return InvSRBench(checkpoints, report=report)
