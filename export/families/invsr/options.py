"""InvSR's command-line options and their value types, shared by its commands."""

from __future__ import annotations

import math

import click

from sr_runtime.families.invsr.image_loop import AUTO

from ... import cli_options as shared


class StepsOrAuto(click.ParamType):
    """A number of steps, or ``auto``."""

    name = "N|auto"

    def convert(self, value, param, ctx):
        if value == AUTO or isinstance(value, int):
            return value
        try:
            return int(value)
        except ValueError:
            self.fail(f"{value!r} is neither a number of steps nor {AUTO!r}", param, ctx)


class FloatList(click.ParamType):
    """Comma-separated numbers, e.g. 0.15,0.5."""

    name = "X,Y,..."

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            numbers = tuple(float(part) for part in value.split(","))
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of numbers", param, ctx)
        if not all(math.isfinite(n) for n in numbers):
            self.fail(f"{value!r}: every number must be finite", param, ctx)
        return numbers


BUILD_STEPS = click.Option(
    ["--steps"], default=None,
    help="Sampling steps: N (default: as many as --timesteps gives, else 1; 1-5 take the official timesteps, more "
         "need --timesteps), step groups such as 1,3,5, or adaptive (= 1,3,5): one bundle and one set of engines "
         "for patch-adaptive sampling (upscale --steps auto).")
TIMESTEPS = click.Option(["--timesteps"], multiple=True,
                         help="Descending timesteps, e.g. '200,100' (default: the official set).")
NOISE_PREDICTOR = shared.path_option("--noise-predictor", help="noise_predictor_sd_turbo_v5.pth")
NOISE_PREDICTOR_CONFIG = shared.path_option(
    "--noise-predictor-config", help="Official sampler YAML (model_start.params) or a flat YAML/JSON of the same keys.")
CHECKPOINTS = (shared.SD_TURBO, NOISE_PREDICTOR, NOISE_PREDICTOR_CONFIG)
RUN_STEPS = click.Option(
    ["--steps"], type=StepsOrAuto(), default=None,
    help="N: every tile runs the step group of N steps (a bundle's, or N official steps with --backend torch); "
         "auto: each tile the group its difficulty asks for (the default for a bundle of several groups).")
ADAPTIVE_THRESHOLDS = click.Option(
    ["--adaptive-thresholds"], type=FloatList(), default=None,
    help="With --steps auto: rising difficulty thresholds in [0, 1] between the step groups (default 0.15,0.5 "
         "for three groups).")
STEPS_MAP = shared.path_option("--steps-map", help="Write a PNG of the LR image tinted by each tile's step group "
                                                   "(several images: put {stem} in the path).")
