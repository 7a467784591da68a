"""InvSR's engine calls per tile batch: vae_encoder -> noise_predictor -> unet_step x N -> vae_decoder,
with every constant (timesteps, sigmas, prompt embeddings) taken from the bundle, never recomputed."""

from __future__ import annotations

import numpy as np

from ...backends.base import LR_FEED, ChainId, ChainPlan
from ...graph_io import Call
from .graphs import NOISE_PREDICTOR, UNET_STEP, VAE_DECODER, VAE_ENCODER, dims
from .section import InvSRSection, StepGroup

# Host data per tile batch, in the order Upscaler.run_tiles takes it.
FEEDS = (LR_FEED, "predictor_noise", "vae_noise")
STEPS = "steps"  # the chains' name: one per step group, by its index
# The denoising steps alternate between two latent buffers, so no step reads what it writes: running a
# call twice (ONNX Runtime does, to capture a CUDA graph) gives the same result.
LATENTS = ("latent_a", "latent_b")


def steps_chain(group: int) -> ChainId:
    """The chain of step group ``group`` (its index in the bundle's groups): every group's chain takes ``FEEDS``."""
    return ChainId(STEPS, group)


def _scalar(value: float) -> np.ndarray:
    return np.array([value], np.float32)


def invsr_calls(steps: int) -> tuple[Call, ...]:
    """vae_encoder -> noise_predictor -> unet_step x ``steps`` -> vae_decoder, over named buffers."""
    calls = [
        VAE_ENCODER.call(noise="vae_noise"),
        NOISE_PREDICTOR.call(timestep="t0", noise="predictor_noise", sigma="sigma0", latent=LATENTS[0]),
    ]
    for i in range(steps):
        calls.append(UNET_STEP.call(latent=LATENTS[i % 2], timestep=f"t{i}", sigma=f"sigma{i}",
                                    sigma_next=f"sigma{i + 1}", latent_next=LATENTS[(i + 1) % 2]))
    calls.append(VAE_DECODER.call(latent=LATENTS[steps % 2]))
    return tuple(calls)


def invsr_plan(section: InvSRSection, group: StepGroup, tile: int, prompt_embeds: np.ndarray, batch: int) -> ChainPlan:
    """The engine calls of one batch of ``batch`` tiles through ``group``'s schedule, with the bundle's constants."""
    constants = {
        **{f"t{i}": _scalar(t) for i, t in enumerate(group.timesteps)},
        **{f"sigma{i}": _scalar(s) for i, s in enumerate(group.sigmas)},
        "prompt_embeds": np.repeat(prompt_embeds, batch, axis=0),
    }
    sizes = dims(batch, tile, section.geometry, prompt_embeds.shape)
    return ChainPlan(batch, invsr_calls(group.steps), constants, FEEDS, "image", sizes)
