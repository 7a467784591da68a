"""One declarative spec per exported network: names, dtypes, dynamic axes, sample inputs and
shape profiles. Export, engine builds, the manifest and the parity tests all read these specs.

Symbolic dimensions: ``batch`` (tiles per call), ``tile`` (LR tile side P), ``latent`` (P/2, the
latent side for x4 with the SD VAE's factor 8), ``image`` (4P), ``tokens`` (77) and ``embed``;
RRDBNet's graph is dynamic in ``height`` / ``width`` with output ``out_height`` / ``out_width`` (x4).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from sr_runtime.upscale import LATENT_CHANNELS, SCALE, VAE_FACTOR

from .stages import NoisePredictorStage, UNetStep, VAEDecoderStage, VAEEncoderStage

TOKENS = 77
DYNAMIC_DIMS = ("batch", "tile", "latent", "image", "height", "width", "out_height", "out_width")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dims: tuple[str | int, ...]
    # Scalars (timesteps, σ) stay fp32 in every precision: the σ arithmetic is where fp16 breaks.
    scalar: bool = False

    def dtype(self, precision: str) -> torch.dtype:
        return torch.float32 if self.scalar or precision == "fp32" else torch.float16

    def shape(self, sizes: dict[str, int]) -> tuple[int, ...]:
        return tuple(sizes[d] if isinstance(d, str) else d for d in self.dims)


@dataclass(frozen=True)
class GraphSpec:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    make_module: Callable[[object], nn.Module]  # InvSRComponents -> torch module of this stage
    description: str

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {
            t.name: {i: d for i, d in enumerate(t.dims) if d in DYNAMIC_DIMS}
            for t in (*self.inputs, *self.outputs)
            if any(d in DYNAMIC_DIMS for d in t.dims)
        }

    def sample_inputs(self, sizes: dict[str, int], precision: str, seed: int = 0) -> tuple[torch.Tensor, ...]:
        """Plausible values (images in [0,1], small latents, real timestep / σ values)."""
        gen = torch.Generator().manual_seed(seed)
        values = []
        for t in self.inputs:
            shape = t.shape(sizes)
            if t.name == "timestep":
                v = torch.full(shape, 199.0)
            elif t.name in ("sigma", "sigma_next"):
                v = torch.full(shape, 0.569285 if t.name == "sigma" else 0.0)
            elif t.name == "lr":
                v = torch.rand(shape, generator=gen)
            else:
                v = torch.randn(shape, generator=gen)
            values.append(v.to(t.dtype(precision)))
        return tuple(values)

    def profile(self, sizes_min: dict[str, int], sizes_opt: dict[str, int], sizes_max: dict[str, int]):
        """input name -> [min, opt, max] shapes (one optimization profile per graph)."""
        return {t.name: [list(t.shape(s)) for s in (sizes_min, sizes_opt, sizes_max)] for t in self.inputs}


def sizes(batch: int, tile: int, embed: int) -> dict[str, int]:
    latent = tile * SCALE // VAE_FACTOR
    return {"batch": batch, "tile": tile, "latent": latent, "image": tile * SCALE, "tokens": TOKENS, "embed": embed}


def _lr() -> TensorSpec:
    return TensorSpec("lr", ("batch", 3, "tile", "tile"))


def _latent(name: str) -> TensorSpec:
    return TensorSpec(name, ("batch", LATENT_CHANNELS, "latent", "latent"))


def _scalar(name: str) -> TensorSpec:
    return TensorSpec(name, (1,), scalar=True)


VAE_ENCODER = GraphSpec(
    name="vae_encoder",
    inputs=(_lr(), _latent("noise")),
    outputs=(_latent("z_lr"),),
    make_module=lambda c: VAEEncoderStage(c.sd_turbo.vae, c.latent_scale),
    description="LR tile -> bicubic x4 -> VAE encoder -> scaled latent (noise = 0: posterior mean)",
)
NOISE_PREDICTOR = GraphSpec(
    name="noise_predictor",
    inputs=(_lr(), _scalar("timestep"), _latent("noise"), _latent("z_lr"), _scalar("sigma")),
    outputs=(_latent("latent"),),
    make_module=lambda c: NoisePredictorStage(c.noise_predictor),
    description="LR tile, t_1, noise, z_lr, sigma_1 -> z_1 = z_lr + sigma_1 * NP(LR, t_1)",
)
UNET_STEP = GraphSpec(
    name="unet_step",
    inputs=(
        _latent("latent"),
        _scalar("timestep"),
        _scalar("sigma"),
        _scalar("sigma_next"),
        TensorSpec("prompt_embeds", ("batch", TOKENS, "embed")),
    ),
    outputs=(_latent("latent_next"),),
    make_module=lambda c: UNetStep(c.sd_turbo.unet),
    description="z_i, t_i, sigma_i, sigma_i+1, prompt embeds -> z_i+1 (input scaling, UNet, Euler update)",
)
VAE_DECODER = GraphSpec(
    name="vae_decoder",
    inputs=(_latent("latent"),),
    outputs=(TensorSpec("image", ("batch", 3, "image", "image")),),
    make_module=lambda c: VAEDecoderStage(c.sd_turbo.vae, c.latent_scale),
    description="latent -> VAE decoder -> image in [0, 1]",
)

# In the order the runtime runs them.
INVSR_GRAPHS: tuple[GraphSpec, ...] = (VAE_ENCODER, NOISE_PREDICTOR, UNET_STEP, VAE_DECODER)


def rrdbnet_sizes(batch: int, tile: int) -> dict[str, int]:
    """The RRDBNet runtime feeds square tiles of the bundle's tile size (images are padded up to it)."""
    return {"batch": batch, "height": tile, "width": tile, "out_height": tile * SCALE, "out_width": tile * SCALE}


# Real-ESRGAN / BSRGAN: one feed-forward network; the ONNX graph is exactly the torch module (no clamp,
# so an fp16 overflow stays visible in the output; the runtime clamps to [0, 1]).
RRDBNET = GraphSpec(
    name="rrdbnet",
    inputs=(TensorSpec("lr", ("batch", 3, "height", "width")),),
    outputs=(TensorSpec("image", ("batch", 3, "out_height", "out_width")),),
    make_module=lambda model: model,  # the source's components are the RRDBNet itself
    description="LR RGB in [0, 1] -> RRDBNet x4 -> SR RGB (unclamped)",
)
RRDBNET_GRAPHS: tuple[GraphSpec, ...] = (RRDBNET,)
