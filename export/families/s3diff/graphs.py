"""S3Diff's exported graphs: the runtime's GraphIO of each stage with the torch module it is traced from."""

from __future__ import annotations

from sr_runtime.families.s3diff import graphs as io
from sr_runtime.families.s3diff.section import S3DiffSection

from ...graph_spec import GraphSpec
from ...sd.vae_segments import segment_specs as shared_segment_specs
from .stages import DegradationStage, EncoderStage, UNetStage, decoder_stage
from .vae_segments import segments_of

UNIT_RANGE = frozenset({"lr", "deg_score"})  # sample values in [0, 1]: the LR and the (sigmoid) scores

DEGRADATION = GraphSpec(io.DEGRADATION, lambda c: DegradationStage(c.de_net), "LR -> DEResNet -> deg_score (blur, noise)",
                        unit_range=UNIT_RANGE)
VAE_ENCODER = GraphSpec(io.VAE_ENCODER, EncoderStage,
                        "x4 image, deg_score, noise -> modulated LoRA VAE encoder -> scaled posterior sample",
                        unit_range=UNIT_RANGE)
UNET = GraphSpec(io.UNET, UNetStage.of,
                 "latent, deg_score, prompt embeds -> modulated LoRA UNet, both prompts as one batch -> guided eps",
                 unit_range=UNIT_RANGE)
VAE_DECODER = GraphSpec(io.VAE_DECODER, decoder_stage, "latent, eps -> one-step x0 -> VAE decoder -> image in [0, 1]")
GRAPHS: tuple[GraphSpec, ...] = (DEGRADATION, VAE_ENCODER, UNET, VAE_DECODER)


def segment_specs(section: S3DiffSection) -> tuple[GraphSpec, ...]:
    return shared_segment_specs(section.encoder_segments, section.decoder_segments, segments_of, (io.DEG_SCORE,),
                                UNIT_RANGE)
