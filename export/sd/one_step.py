"""One DDPM step from a timestep straight to x0, as the one-step SD families (S3Diff, OSEDiff) build it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sr_runtime.errors import SRError


@dataclass(frozen=True)
class OneStep:
    """``DDPMScheduler.step`` from the timestep straight to x0 (the previous alpha_prod is 1)."""

    timestep: int
    sqrt_alpha_prod: float
    sqrt_beta_prod: float
    clip_sample_range: float | None


def one_step(scheduler_config: dict, timestep: int, family: str, source: Path) -> OneStep:
    """As the one-step families' ``make_1step_sched``: DDPM from the release's scheduler config (its ``clip_sample``
    applies to x0), at ``timestep``."""
    from diffusers import DDPMScheduler
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # it notes that the config names another scheduler class
    try:
        scheduler = DDPMScheduler.from_config(scheduler_config)
    finally:
        diffusers_logging.set_verbosity(level)
    config = scheduler.config
    if config.num_train_timesteps <= timestep or config.prediction_type != "epsilon" or config.thresholding:
        raise SRError(f"{source}: {family} runs t = {timestep} with epsilon prediction and no thresholding; the scheduler "
                      f"config has {config.num_train_timesteps} timesteps, {config.prediction_type!r}, thresholding "
                      f"{config.thresholding}")
    alpha = scheduler.alphas_cumprod[timestep]
    return OneStep(timestep, float(alpha ** 0.5), float((1 - alpha) ** 0.5),
                   float(config.clip_sample_range) if config.clip_sample else None)
