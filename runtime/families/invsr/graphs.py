"""InvSR's four networks as the runtime binds them (the export side traces its torch stages to these).

Symbolic dimensions: ``batch`` (tiles per call), ``tile`` (LR tile side P), ``latent`` (4P / the VAE's
factor), ``image`` (4P), and, fixed at export, ``latent_channels``, ``tokens`` and ``embed`` (the
prompt embedding's length and width).
"""

from __future__ import annotations

from ...graph_io import Dims, GraphIO, TensorIO
from .section import SCALE, Geometry

FIXED_DIMS = frozenset({"latent_channels", "tokens", "embed"})
LR = TensorIO("lr", ("batch", 3, "tile", "tile"))


def _latent(name: str) -> TensorIO:
    return TensorIO(name, ("batch", "latent_channels", "latent", "latent"))


def _scalar(name: str) -> TensorIO:
    return TensorIO(name, (1,), scalar=True)


# LR tile -> bicubic x4 -> VAE encoder -> scaled latent (noise = 0: the posterior mean)
VAE_ENCODER = GraphIO("vae_encoder", (LR, _latent("noise")), (_latent("z_lr"),), FIXED_DIMS)
# LR tile, t_1, noise, z_lr, sigma_1 -> z_1 = z_lr + sigma_1 * NP(LR, t_1)
NOISE_PREDICTOR = GraphIO(
    "noise_predictor",
    (LR, _scalar("timestep"), _latent("noise"), _latent("z_lr"), _scalar("sigma")),
    (_latent("latent"),),
    FIXED_DIMS,
)
# z_i, t_i, sigma_i, sigma_i+1, prompt embeds -> z_i+1 (input scaling, UNet, Euler update)
UNET_STEP = GraphIO(
    "unet_step",
    (_latent("latent"), _scalar("timestep"), _scalar("sigma"), _scalar("sigma_next"),
     TensorIO("prompt_embeds", ("batch", "tokens", "embed"))),
    (_latent("latent_next"),),
    FIXED_DIMS,
)
# latent -> VAE decoder -> image in [0, 1]
VAE_DECODER = GraphIO("vae_decoder", (_latent("latent"),), (TensorIO("image", ("batch", 3, "image", "image")),),
                      FIXED_DIMS)

# In the order the runtime runs them.
GRAPHS: tuple[GraphIO, ...] = (VAE_ENCODER, NOISE_PREDICTOR, UNET_STEP, VAE_DECODER)


def dims(batch: int, tile: int, geometry: Geometry, embed_shape: list[int] | tuple[int, ...]) -> Dims:
    """The symbolic dimensions' values for a batch of ``batch`` tiles."""
    return {
        "batch": batch,
        "tile": tile,
        "latent": geometry.latent_side(tile),
        "image": tile * SCALE,
        "latent_channels": geometry.latent_channels,
        "tokens": embed_shape[1],
        "embed": embed_shape[2],
    }
