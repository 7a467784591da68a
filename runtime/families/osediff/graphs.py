"""OSEDiff's graphs as the runtime binds them (the export side traces its torch stages to these).

Symbolic dimensions: ``batch``; ``classes`` (RAM's tags); ``tokens`` and ``embed`` (the prompt embedding);
``height`` / ``width`` (the x4 image, multiples of 8); ``latent_height`` / ``latent_width``; each VAE segment's own
input and output sizes (a tile at its level); ``latent_channels``. ``classes``, ``tokens``, ``embed`` and
``latent_channels`` are fixed at export.
"""

from __future__ import annotations

from ...graph_io import Dims, GraphIO, TensorIO
from ...sd.vae_graphs import segment_graphs, segment_sizes
from .section import TAGGER_SIZE, OSEDiffSection

FIXED_DIMS = frozenset({"latent_channels", "classes", "tokens", "embed"})
TAGGER_IMAGE = TensorIO("tagger_image", ("batch", 3, TAGGER_SIZE, TAGGER_SIZE))  # in [0, 1]
# Probabilities compared with the class thresholds on the host: fp32 whatever the bundle's precision.
TAG_PROBABILITIES = TensorIO("tag_probabilities", ("batch", "classes"), scalar=True)
# CLIP token ids as fp32 (exact below 2**24): the graphs take floating-point tensors only; the graph casts them.
INPUT_IDS = TensorIO("input_ids", ("batch", "tokens"), scalar=True)
PROMPT_EMBEDS = TensorIO("prompt_embeds", ("batch", "tokens", "embed"))
IMAGE = TensorIO("image", ("batch", 3, "height", "width"))  # the x4 image in [-1, 1]
SR = TensorIO("sr", ("batch", 3, "height", "width"))  # in [0, 1]


def _latent(name: str) -> TensorIO:
    return TensorIO(name, ("batch", "latent_channels", "latent_height", "latent_width"))


# the x4 image resized to 384 in [0, 1] -> ImageNet normalisation -> RAM with DAPE's LoRA -> sigmoid per class
TAGGER = GraphIO("tagger", (TAGGER_IMAGE,), (TAG_PROBABILITIES,), FIXED_DIMS)
# prompt token ids -> CLIP text encoder -> last hidden state
TEXT_ENCODER = GraphIO("text_encoder", (INPUT_IDS,), (PROMPT_EMBEDS,), FIXED_DIMS)
# image, noise -> the VAE encoder with its LoRA merged -> scaling_factor * (mean + std * noise)
VAE_ENCODER = GraphIO("vae_encoder", (IMAGE, _latent("noise")), (_latent("latent"),), FIXED_DIMS)
# latent, prompt embeds -> the UNet with its LoRA merged, at the timestep -> eps
UNET = GraphIO("unet", (_latent("latent"), PROMPT_EMBEDS), (_latent("eps"),), FIXED_DIMS)
# latent, eps -> one-step DDPM x0 -> VAE decoder -> clamp -> [0, 1]
VAE_DECODER = GraphIO("vae_decoder", (_latent("latent"), _latent("eps")), (SR,), FIXED_DIMS)

# In the order the runtime runs them (then the VAE segments of the bundle's section).
GRAPHS: tuple[GraphIO, ...] = (TAGGER, TEXT_ENCODER, VAE_ENCODER, UNET, VAE_DECODER)


def all_graphs(section: OSEDiffSection) -> tuple[GraphIO, ...]:
    return (*GRAPHS, *segment_graphs(section.encoder_segments, section.decoder_segments))


def dims(batch: int, height: int, width: int, section: OSEDiffSection) -> Dims:
    """The symbolic dimensions of an x4 image of ``height`` x ``width`` px, each VAE segment's at the size its level
    has when that image is one tile."""
    f = section.vae_factor
    return {
        **segment_sizes(section.encoder_segments, section.decoder_segments, height, width, f),
        "batch": batch,
        "classes": len(section.tags),
        "tokens": section.tokens,
        "embed": section.embed,
        "height": height,
        "width": width,
        "latent_height": height // f,
        "latent_width": width // f,
        "latent_channels": section.latent_channels,
    }
