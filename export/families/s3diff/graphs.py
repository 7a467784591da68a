"""S3Diff's exported graphs: the runtime's GraphIO of each stage with the torch module it is traced from."""

from __future__ import annotations

from sr_runtime.families.s3diff import graphs as io
from sr_runtime.families.s3diff.section import S3DiffSection

from ...graph_spec import GraphSpec
from .stages import DecoderStage, DegradationStage, EncoderStage, UNetStage
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
VAE_DECODER = GraphSpec(io.VAE_DECODER, DecoderStage, "latent, eps -> one-step x0 -> VAE decoder -> image in [0, 1]")
GRAPHS: tuple[GraphSpec, ...] = (DEGRADATION, VAE_ENCODER, UNET, VAE_DECODER)


def segment_specs(section: S3DiffSection) -> tuple[GraphSpec, ...]:
    """One graph per VAE segment of the official tiled VAE (group statistics of mean 0, variance 1 as samples)."""
    specs = []
    for kind, records in (("encoder", section.encoder_segments), ("decoder", section.decoder_segments)):
        for index, record in enumerate(records):
            specs.append(GraphSpec(
                io.segment_io(kind, index, record),
                lambda c, kind=kind, index=index: segments_of(c, kind).modules[index],
                f"tiled VAE {kind} segment {index}: gathered group norm -> up to the next norm",
                constants={"mean": 0.0, "var": 1.0},
                unit_range=UNIT_RANGE,
            ))
    return tuple(specs)
