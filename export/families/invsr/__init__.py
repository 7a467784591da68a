"""InvSR (arbitrary-step x4 SR by diffusion inversion, zsyOAOA/InvSR) on the export side: loaders of
the noise predictor and SD-Turbo, the PyTorch reference of the official sampler, the four graphs, the
build plan, the Table 7 rows and the command-line options."""

from __future__ import annotations

from pathlib import Path

from sr_runtime.manifest import Manifest

from ... import cli_options as shared
from ...reporting import Report
from ..base import ExportFamily, ImageRunner, Options
from .adaptive_bench import adaptive_bench
from .options import ADAPTIVE_THRESHOLDS, BUILD_STEPS, CHECKPOINTS, RUN_STEPS, STEPS_MAP, TIMESTEPS


def _groups(options: Options, run_steps: bool = False) -> tuple[tuple[int, ...], ...]:
    """The step groups the options ask for: a build's ``--steps``, or a reference's ``--steps`` (auto: the
    adaptive set) with ``--timesteps``."""
    from .schedule import ADAPTIVE, parse_timesteps, step_groups

    steps = options["steps"]
    if run_steps:
        steps = ADAPTIVE if steps == "auto" else steps
    return step_groups(None if steps is None else str(steps), parse_timesteps(options["timesteps"]))


class InvSRExport(ExportFamily):
    name = "invsr"
    title = "InvSR"
    models = ("invsr",)
    build_options = (BUILD_STEPS, TIMESTEPS, *CHECKPOINTS)
    reference_options = (TIMESTEPS, *CHECKPOINTS, shared.REFERENCE_TILE, shared.REFERENCE_BATCH, shared.DEVICE,
                         shared.DTYPE)
    image_options = (RUN_STEPS, ADAPTIVE_THRESHOLDS, STEPS_MAP)
    compare_options = (shared.path_option(
        "--noise-predictor-config",
        help="The config the bundle was built with, to build the reference (default: the YAML beside the .pth)."),)
    bench_options = CHECKPOINTS
    bench_commands = (adaptive_bench,)

    def check_build(self, model: str, options: Options, tile: int) -> None:
        from sr_runtime.families.invsr.section import check_tile_size

        _groups(options)
        check_tile_size(tile)

    def source(self, model: str, options: Options, report: Report):
        from .source import resolve_source

        return resolve_source(options["sd_turbo"], options["noise_predictor"], options["noise_predictor_config"],
                              _groups(options), report=report)

    def reference(self, model: str, options: Options, report: Report) -> ImageRunner:
        from sr_runtime.families.invsr.image_loop import UpscaleSettings, image_cost
        from sr_runtime.precision import Precision

        from ...devices import check_torch_device
        from ...graph_spec import TORCH_DTYPES
        from .reference import InvSRReference
        from .schedule import build_schedule
        from .source import resolve_source

        def settings(**per_image) -> UpscaleSettings:
            return UpscaleSettings(tile=options["tile"], batch=options["batch"], **{**self.run_values(options), **per_image})

        settings()  # bad options fail before anything is loaded
        check_torch_device(options["device"])
        source = resolve_source(options["sd_turbo"], options["noise_predictor"], options["noise_predictor_config"],
                                _groups(options, run_steps=True), allow_demo=False, report=report)
        schedules = [build_schedule(source.components.scheduler_config, g) for g in source.groups]
        for schedule in schedules:
            report(f"timesteps {list(schedule.cli_timesteps)}, sigmas {[round(s, 6) for s in schedule.sigmas]}")
        reference = InvSRReference(source.components, schedules, device=options["device"],
                                   dtype=TORCH_DTYPES[Precision(options["dtype"])])
        geometry = source.components.geometry
        return ImageRunner(
            lambda image, progress, per_image: reference.upscale(image, settings(**per_image), progress),
            lambda height, width: image_cost(height, width, options["tile"], geometry, options["color_fix"]),
            {"steps_map": options["steps_map"]} if options["steps_map"] else {},
        )

    def reference_source(self, manifest: Manifest, options: Options, report: Report):
        from .source import resolve_source

        ck = manifest.checkpoints
        np_path = Path(ck["noise_predictor"].path)
        config = options["noise_predictor_config"] or next(np_path.parent.glob("*.yaml"), None)
        groups = tuple(tuple(g.cli_timesteps) for g in manifest.section.groups)
        return resolve_source(ck["sd_turbo"].path, np_path, config, groups, allow_demo=False, report=report)

    def bench(self, options: Options, report: Report):
        from .bench import InvSRBench
        from .locate import find_checkpoints

        checkpoints = None
        if options["sd_turbo"] or options["noise_predictor"]:
            checkpoints = (*find_checkpoints(options["sd_turbo"], options["noise_predictor"]),
                           options["noise_predictor_config"])
        return InvSRBench(checkpoints, report=report)
