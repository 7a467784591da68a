"""InvSR's timestep choice and the Euler σ table of the SD-Turbo scheduler.

InvSR never calls ``set_timesteps``: it indexes the full 1000-entry training σ table with
t = T - 1 for each user timestep T, and appends a final σ (0 for ``final_sigmas_type="zero"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sr_runtime.errors import SRError

# The official defaults (inference_invsr.py); above 5 steps the official script crashes, so we
# ask for an explicit list instead of guessing.
DEFAULT_TIMESTEPS: dict[int, tuple[int, ...]] = {
    1: (200,),
    2: (200, 100),
    3: (200, 100, 50),
    4: (200, 150, 100, 50),
    5: (250, 200, 150, 100, 50),
}

NUM_TRAIN_TIMESTEPS = 1000
# The noise predictor is trained at these first timesteps only (the official trainer's train.timesteps):
# every group of a patch-adaptive bundle starts at one of them.
PREDICTOR_TIMESTEPS = (250, 200, 150, 100)
ADAPTIVE = "adaptive"
ADAPTIVE_STEPS = (1, 3, 5)  # --steps adaptive: the official sets for 1, 3 and 5 steps


@dataclass(frozen=True)
class Schedule:
    """Constants of one sampling run: what the reference and the engine bundle both use."""

    cli_timesteps: tuple[int, ...]  # T_i as the user gives them, descending
    timesteps: tuple[float, ...]  # t_i = T_i - 1, the values fed to the networks
    sigmas: tuple[float, ...]  # σ(t_1) .. σ(t_N), then the final σ: N + 1 float32 values

    @property
    def steps(self) -> int:
        return len(self.timesteps)


def parse_timesteps(values: Sequence[str]) -> list[int] | None:
    """Accepts ``--timesteps 200 --timesteps 100`` as well as ``--timesteps 200,100`` or "200 100"."""
    tokens = [tok for value in values for tok in value.replace(",", " ").split()]
    if values and not tokens:
        raise SRError(f"--timesteps {' '.join(values)!r} names no timesteps; leave it out for the official set")
    try:
        return [int(tok) for tok in tokens] or None
    except ValueError as err:
        raise SRError(f"--timesteps takes integers, got {' '.join(values)!r}") from err


def resolve_timesteps(steps: int, timesteps: Sequence[int] | None = None) -> tuple[int, ...]:
    """The official rule: an explicit list must have ``steps`` entries and is sorted descending."""
    if steps < 1:
        raise SRError(f"--steps must be at least 1, got {steps}")
    if timesteps:
        if len(timesteps) != steps:
            raise SRError(f"--timesteps has {len(timesteps)} values but --steps is {steps}")
        bad = [t for t in timesteps if not 1 <= int(t) <= NUM_TRAIN_TIMESTEPS]
        if bad:
            raise SRError(f"timesteps must lie in 1..{NUM_TRAIN_TIMESTEPS}, got {bad}")
        if len(set(timesteps)) != len(timesteps):
            raise SRError(f"timesteps must be distinct, got {list(timesteps)}")
        return tuple(sorted((int(t) for t in timesteps), reverse=True))
    if steps not in DEFAULT_TIMESTEPS:
        raise SRError(f"InvSR has default timesteps for 1-5 steps only; give --timesteps for {steps} steps")
    return DEFAULT_TIMESTEPS[steps]


def step_groups(steps: str | None, timesteps: Sequence[int] | None = None) -> tuple[tuple[int, ...], ...]:
    """The schedules a build runs: ``--steps N`` (or ``--timesteps``) gives one, ``--steps 1,3,5`` one per
    count (the official sets) and ``--steps adaptive`` the sets for 1, 3 and 5 steps."""
    if steps is None or "," not in steps and steps != ADAPTIVE:
        try:
            count = int(steps) if steps is not None else len(timesteps or (1,))
        except ValueError:
            raise SRError(f"--steps takes a number, a list such as 1,3,5, or {ADAPTIVE}; got {steps!r}") from None
        return (resolve_timesteps(count, timesteps),)
    if timesteps:
        raise SRError("--timesteps sets one schedule; with several step groups each takes the official set")
    try:
        counts = ADAPTIVE_STEPS if steps == ADAPTIVE else tuple(int(n) for n in steps.split(","))
    except ValueError:
        raise SRError(f"--steps takes a number, a list such as 1,3,5, or {ADAPTIVE}; got {steps!r}") from None
    return check_groups(tuple(resolve_timesteps(n) for n in counts))


def check_groups(groups: tuple[tuple[int, ...], ...]) -> tuple[tuple[int, ...], ...]:
    """Several groups: distinct step counts, fewest first, each starting where the noise predictor was trained."""
    counts = [len(g) for g in groups]
    if len(set(counts)) != len(counts):
        raise SRError(f"step groups must differ in their step counts, got {counts}")
    if len(groups) > 1 and (bad := [g for g in groups if g[0] not in PREDICTOR_TIMESTEPS]):
        raise SRError(f"each step group must start at a timestep the noise predictor was trained at "
                      f"({', '.join(map(str, PREDICTOR_TIMESTEPS))}); {list(bad[0])} starts at {bad[0][0]}")
    return tuple(sorted(groups, key=len))


def sigma_table(scheduler_config: dict) -> np.ndarray:
    """Ascending σ_k for k = 0..999, computed by diffusers' own Euler scheduler (float32)."""
    from diffusers import EulerDiscreteScheduler

    scheduler = EulerDiscreteScheduler.from_config(scheduler_config)
    if scheduler.config.prediction_type != "epsilon":
        raise SRError(f"scheduler prediction_type must be 'epsilon', got {scheduler.config.prediction_type!r}")
    # scheduler.sigmas is [σ_999 .. σ_0, 0]; the official pipeline caches sigmas.flip(0)[1:].
    return scheduler.sigmas.flip(0)[1:].numpy().astype(np.float32)


def final_sigma(scheduler_config: dict, table: np.ndarray) -> float:
    kind = scheduler_config.get("final_sigmas_type", "zero")
    if kind == "zero":
        return 0.0
    if kind == "sigma_min":
        return float(table[0])
    raise SRError(f"unsupported final_sigmas_type {kind!r} in the scheduler config")


def build_schedule(scheduler_config: dict, cli_timesteps: Sequence[int]) -> Schedule:
    table = sigma_table(scheduler_config)
    ts = [int(t) - 1 for t in cli_timesteps]
    sigmas = [float(table[t]) for t in ts] + [final_sigma(scheduler_config, table)]
    return Schedule(
        cli_timesteps=tuple(int(t) for t in cli_timesteps),
        timesteps=tuple(float(t) for t in ts),
        sigmas=tuple(float(np.float32(s)) for s in sigmas),
    )
