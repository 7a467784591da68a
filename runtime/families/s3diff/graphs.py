"""S3Diff's graphs as the runtime binds them (the export side traces its torch stages to these).

Every graph that holds LoRA layers takes the per-image ``deg_score`` (blur, noise) and computes its own
modulation matrices from it, so one engine serves every image. Symbolic dimensions: ``batch``,
``lr_height`` / ``lr_width`` (the LR image), ``height`` / ``width`` (the x4 image padded to multiples of
64), ``latent_height`` / ``latent_width``, each VAE segment's own input and output sizes (a tile at its
level), and, fixed at export, ``latent_channels``, ``tokens`` and ``embed`` (the prompt embeddings).
"""

from __future__ import annotations

from ...graph_io import Dims, GraphIO, TensorIO
from ...sd.vae_graphs import segment_graphs, segment_sizes
from .preprocess import padded_size
from .section import S3DiffSection

FIXED_DIMS = frozenset({"latent_channels", "tokens", "embed"})
# fp32 in every precision (``scalar``): the modulation's Fourier features and the group statistics need it.
DEG_SCORE = TensorIO("deg_score", ("batch", 2), scalar=True)
LR = TensorIO("lr", ("batch", 3, "lr_height", "lr_width"))  # in [0, 1]
IMAGE = TensorIO("image", ("batch", 3, "height", "width"))  # the padded x4 image in [-1, 1]
SR = TensorIO("sr", ("batch", 3, "height", "width"))  # in [0, 1]
PROMPT_EMBEDS = TensorIO("prompt_embeds", (2, "tokens", "embed"))  # positive, negative


def _latent(name: str) -> TensorIO:
    return TensorIO(name, ("batch", "latent_channels", "latent_height", "latent_width"))


# LR in [0, 1] -> DEResNet -> (blur, noise) scores in (0, 1)
DEGRADATION = GraphIO("degradation", (LR,), (DEG_SCORE,), FIXED_DIMS)
# image, deg_score, noise -> the LoRA VAE encoder -> scaling_factor * (mean + std * noise)
VAE_ENCODER = GraphIO("vae_encoder", (IMAGE, DEG_SCORE, _latent("noise")), (_latent("latent"),), FIXED_DIMS)
# latent, deg_score -> the LoRA UNet at the timestep, positive and negative prompts as one batch of 2B -> guided eps
UNET = GraphIO("unet", (_latent("latent"), DEG_SCORE, PROMPT_EMBEDS), (_latent("eps"),), FIXED_DIMS)
# latent, eps -> one-step DDPM x0 -> VAE decoder -> clamp -> [0, 1]
VAE_DECODER = GraphIO("vae_decoder", (_latent("latent"), _latent("eps")), (SR,), FIXED_DIMS)

# In the order the runtime runs them (then the VAE segments of the bundle's section).
GRAPHS: tuple[GraphIO, ...] = (DEGRADATION, VAE_ENCODER, UNET, VAE_DECODER)


def all_graphs(section: S3DiffSection) -> tuple[GraphIO, ...]:
    return (*GRAPHS, *segment_graphs(section.encoder_segments, section.decoder_segments, (DEG_SCORE,)))


def dims(batch: int, lr_height: int, lr_width: int, section: S3DiffSection, embed_shape: list[int] | tuple[int, ...],
         ) -> Dims:
    """The symbolic dimensions of a whole image of ``lr_height`` x ``lr_width`` LR px (padded as the official), each
    VAE segment's at the size its level has when that image is one tile."""
    height, width = padded_size(lr_height), padded_size(lr_width)
    return {
        **segment_sizes(section.encoder_segments, section.decoder_segments, height, width, section.vae_factor),
        "batch": batch,
        "lr_height": lr_height,
        "lr_width": lr_width,
        "height": height,
        "width": width,
        "latent_height": height // section.vae_factor,
        "latent_width": width // section.vae_factor,
        "latent_channels": section.latent_channels,
        "tokens": embed_shape[1],
        "embed": embed_shape[2],
    }
