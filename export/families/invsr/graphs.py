"""InvSR's exported graphs: the runtime's GraphIO of each network with the torch stage it is traced
from (``stages.py``) and plausible sample inputs (a real timestep and σ)."""

from __future__ import annotations

from sr_runtime.families.invsr import graphs as io

from ...graph_spec import GraphSpec
from .stages import NoisePredictorStage, UNetStep, VAEDecoderStage, VAEEncoderStage

# t = 199 (the default one-step T = 200) and its σ in SD-Turbo's table; a final σ of 0.
SAMPLE_SCALARS = {"timestep": 199.0, "sigma": 0.569285, "sigma_next": 0.0}

VAE_ENCODER = GraphSpec(
    io.VAE_ENCODER,
    lambda c: VAEEncoderStage(c.sd_turbo.vae, c.latent_scale),
    "LR tile -> bicubic x4 -> VAE encoder -> scaled latent (noise = 0: posterior mean)",
)
NOISE_PREDICTOR = GraphSpec(
    io.NOISE_PREDICTOR,
    lambda c: NoisePredictorStage(c.noise_predictor),
    "LR tile, t_1, noise, z_lr, sigma_1 -> z_1 = z_lr + sigma_1 * NP(LR, t_1)",
    SAMPLE_SCALARS,
)
UNET_STEP = GraphSpec(
    io.UNET_STEP,
    lambda c: UNetStep(c.sd_turbo.unet),
    "z_i, t_i, sigma_i, sigma_i+1, prompt embeds -> z_i+1 (input scaling, UNet, Euler update)",
    SAMPLE_SCALARS,
)
VAE_DECODER = GraphSpec(
    io.VAE_DECODER,
    lambda c: VAEDecoderStage(c.sd_turbo.vae, c.latent_scale),
    "latent -> VAE decoder -> image in [0, 1]",
)

# In the order the runtime runs them.
GRAPHS: tuple[GraphSpec, ...] = (VAE_ENCODER, NOISE_PREDICTOR, UNET_STEP, VAE_DECODER)
