"""ResShift's engine calls per patch batch: vq_encoder (prior sample) -> unet_step x N -> vq_decoder, with
every sampling constant taken from the bundle, never recomputed."""

from __future__ import annotations

from dataclasses import asdict, fields

import numpy as np

from ...backends.base import LR_FEED, ChainPlan
from ...graph_io import Call
from .graphs import UNET_STEP, VQ_DECODER, VQ_ENCODER, dims
from .section import ResShiftSection, SamplingStep

PRIOR_NOISE = "noise_prior"
ZERO_NOISE = "zero_noise"  # the last call's noise: its draw is discarded
STEP_FIELDS = tuple(f.name for f in fields(SamplingStep))
# The steps alternate between two latent buffers, so no call reads what it writes (ONNX Runtime runs a
# call twice to capture a CUDA graph).
LATENTS = ("latent_a", "latent_b")


def step_noise(index: int) -> str:
    """The buffer of the draw made after UNet call ``index``."""
    return f"noise_step{index}"


def noise_feeds(calls: int) -> tuple[str, ...]:
    """The draws the chain uses, in draw order: the prior, then those of every UNet call but the last."""
    return (PRIOR_NOISE, *(step_noise(i) for i in range(calls - 1)))


def feed_names(calls: int) -> tuple[str, ...]:
    """Host data per patch batch, in the order ``Upscaler.run_tiles`` takes it."""
    return (LR_FEED, *noise_feeds(calls))


def _scalar(value: float) -> np.ndarray:
    return np.array([value], np.float32)


def resshift_calls(calls: int) -> tuple[Call, ...]:
    chain = [VQ_ENCODER.call(noise=PRIOR_NOISE, latent=LATENTS[0])]
    for i in range(calls):
        constants = {name: f"{name}{i}" for name in STEP_FIELDS}
        noise = step_noise(i) if i < calls - 1 else ZERO_NOISE
        chain.append(UNET_STEP.call(latent=LATENTS[i % 2], noise=noise, latent_next=LATENTS[(i + 1) % 2], **constants))
    chain.append(VQ_DECODER.call(latent=LATENTS[calls % 2]))
    return tuple(chain)


def resshift_plan(section: ResShiftSection, batch: int, height: int, width: int) -> ChainPlan:
    """The engine calls of ``batch`` padded patches of ``height`` x ``width`` LR px."""
    constants = {
        "prior_scale": _scalar(section.prior_scale),
        ZERO_NOISE: np.zeros((batch, section.latent_channels, height, width), np.float32),
        **{f"{name}{i}": _scalar(value) for i, step in enumerate(section.steps) for name, value in asdict(step).items()},
    }
    calls = len(section.steps)
    return ChainPlan(batch, resshift_calls(calls), constants, feed_names(calls), "image",
                     dims(batch, height, width, section.latent_channels))
