"""OSEDiff's exported graphs: the runtime's GraphIO of each stage with the torch module it is traced from."""

from __future__ import annotations

from sr_runtime.families.osediff import graphs as io
from sr_runtime.families.osediff.section import OSEDiffSection

from ...graph_spec import GraphSpec
from ...sd.stages import DecoderStage
from ...sd.vae_segments import segment_specs as shared_segment_specs
from .stages import EncoderStage, TaggerStage, TextEncoderStage, UNetStage
from .vae_segments import segments_of

# Sample values in [0, 1]: images, and token ids (rounded in the graph: ids 0 and 1, which every vocabulary has).
UNIT_RANGE = frozenset({"tagger_image", "input_ids"})

TAGGER = GraphSpec(io.TAGGER, TaggerStage, "384 x 384 image -> RAM (DAPE's LoRA merged) -> tag probabilities",
                   unit_range=UNIT_RANGE)
TEXT_ENCODER = GraphSpec(io.TEXT_ENCODER, TextEncoderStage, "token ids -> CLIP text encoder -> prompt embeddings",
                         unit_range=UNIT_RANGE)
VAE_ENCODER = GraphSpec(io.VAE_ENCODER, EncoderStage,
                        "x4 image, noise -> VAE encoder (LoRA merged) -> scaled posterior sample")
UNET = GraphSpec(io.UNET, UNetStage, "latent, prompt embeds -> UNet (LoRA merged) at t = 999 -> eps")
VAE_DECODER = GraphSpec(io.VAE_DECODER, lambda c: DecoderStage(c.sd.vae, c.one_step, c.latent_scale),
                        "latent, eps -> one-step x0 -> VAE decoder -> image in [0, 1]")
GRAPHS: tuple[GraphSpec, ...] = (TAGGER, TEXT_ENCODER, VAE_ENCODER, UNET, VAE_DECODER)


def segment_specs(section: OSEDiffSection) -> tuple[GraphSpec, ...]:
    return shared_segment_specs(section.encoder_segments, section.decoder_segments, segments_of)
