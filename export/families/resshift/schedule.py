"""ResShift's eta schedule and the per-call constants of its sampler, as the official code computes them.

``get_named_eta_schedule('exponential')`` gives sqrt(eta_t) in float64; respacing keeps the steps
``int(T / S * i)``; ``GaussianDiffusion`` derives the posterior coefficients in float64, and the sampler
reads each one into a float32 tensor (``_extract_into_tensor``) before the float32 arithmetic that
scales the UNet input and the noise. The constants here are those float32 values, computed by the
same torch operations, so the engines and the reference multiply by exactly what the official does.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from sr_runtime.families.resshift.section import SamplingStep

from .config import DiffusionConfig
from .official_configs import OfficialCode

# SinSR's schedule also caps the first sqrt(eta) at sqrt(0.001); ResShift's has that cap commented out.
SINSR_ETA_CAP = math.sqrt(0.001)


def sqrt_eta_schedule(d: DiffusionConfig, code: OfficialCode) -> np.ndarray:
    """The full exponential schedule sqrt(eta_1) .. sqrt(eta_T), float64."""
    start = min(d.min_noise_level / d.kappa, d.min_noise_level)
    if code is OfficialCode.SINSR:
        start = min(start, SINSR_ETA_CAP)
    increaser = math.exp(1 / (d.steps - 1) * math.log(d.etas_end / start))
    base = np.ones([d.steps]) * increaser
    power_timestep = np.linspace(0, 1, d.steps, endpoint=True) ** d.power
    power_timestep *= d.steps - 1
    return np.power(base, power_timestep) * start


def respaced(sqrt_etas: np.ndarray, sample_steps: int) -> tuple[np.ndarray, list[int]]:
    """(the kept sqrt(eta) values, the trained index of each: the UNet's timestep), as ``space_timesteps``."""
    total = len(sqrt_etas)
    kept = sorted({int((total / sample_steps) * x) for x in range(sample_steps)})
    return sqrt_etas[kept], kept


def _f32(values: np.ndarray, t: int) -> torch.Tensor:
    return torch.from_numpy(values)[t].float()


def sampling_steps(d: DiffusionConfig, code: OfficialCode, one_step: bool) -> tuple[float, list[SamplingStep]]:
    """(the prior's kappa * sqrt(eta_T), the UNet calls in order: t = T-1 .. 0, or SinSR's single one)."""
    sqrt_etas, timestep_map = respaced(sqrt_eta_schedule(d, code), d.timestep_respacing)
    etas = sqrt_etas**2
    etas_prev = np.append(0.0, etas[:-1])
    alpha = etas - etas_prev
    variance = d.kappa**2 * etas_prev / etas * alpha
    log_variance = np.log(np.append(variance[1], variance[1:]))  # the official clips t = 0 to t = 1's value
    coef_latent, coef_x0 = etas_prev / etas, alpha / etas
    last = len(etas) - 1
    prior_scale = float(_f32(d.kappa * sqrt_etas, last))

    def divisor(t: int) -> float:
        if not d.normalize_input:
            return 1.0
        if d.latent_flag:
            return float(torch.sqrt(_f32(etas, t) * d.kappa**2 + 1))
        return float(_f32(sqrt_etas, t) * d.kappa * 3 + 1)

    if one_step:  # SinSR: the x0 prediction of the call at T-1 is the result
        return prior_scale, [SamplingStep(float(timestep_map[last]), divisor(last), 0.0, 1.0, 0.0)]
    steps = []
    for t in range(last, -1, -1):
        std = float(torch.exp(0.5 * _f32(log_variance, t))) if t else 0.0  # no noise at t = 0
        steps.append(SamplingStep(float(timestep_map[t]), divisor(t), float(_f32(coef_latent, t)),
                                  float(_f32(coef_x0, t)), std))
    return prior_scale, steps
