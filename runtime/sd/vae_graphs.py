"""The graphs of the official tiled VAE's segments, as the runtime binds them: their names, their own spatial
dimensions and their inputs (the gathered group statistics, the pending residual, the family's conditioning of the
encoder, the decoder's eps)."""

from __future__ import annotations

from ..backends.base import LR_FEED, ChainPlan
from ..errors import SRError
from ..graph_io import GraphIO, TensorIO
from .vae_segment import VAESegment

ENCODER, DECODER = "encoder", "decoder"


def segment_name(kind: str, index: int) -> str:
    """``kind``: "encoder" or "decoder"."""
    return f"vae_{kind}_segment{index}"


def segment_dims(kind: str, index: int) -> tuple[str, str, str, str]:
    """A segment's own spatial dimensions: (height, width) of its input, then of its output."""
    name = segment_name(kind, index)
    return f"{name}_height", f"{name}_width", f"{name}_out_height", f"{name}_out_width"


def segment_io(kind: str, index: int, segment: VAESegment, conditioning: tuple[TensorIO, ...] = ()) -> GraphIO:
    """One VAE segment: x (with its norm's gathered statistics, the pending residual, the encoder's ``conditioning``
    (S3Diff's deg_score), the decoder's eps) -> y, with the residual then pending packed after its
    ``out_channels``."""
    height, width, out_height, out_width = segment_dims(kind, index)
    space = ("batch", segment.in_channels, height, width)
    inputs = [TensorIO("x", space)]
    if segment.norm_groups is not None:
        inputs += [TensorIO(name, ("batch", segment.norm_groups), scalar=True) for name in ("mean", "var")]
    if segment.residual_in is not None:
        inputs.append(TensorIO("residual", ("batch", segment.residual_in, height, width)))
    if kind == ENCODER:
        inputs += conditioning
    elif index == 0:
        inputs.append(TensorIO("eps", space))
    packed = segment.out_channels + (segment.residual_out or 0)
    return GraphIO(segment_name(kind, index), tuple(inputs), (TensorIO("y", ("batch", packed, out_height, out_width)),))


def segment_graphs(encoder: list[VAESegment], decoder: list[VAESegment], conditioning: tuple[TensorIO, ...] = ()
                   ) -> tuple[GraphIO, ...]:
    return (*(segment_io(ENCODER, i, s, conditioning) for i, s in enumerate(encoder)),
            *(segment_io(DECODER, i, s) for i, s in enumerate(decoder)))


def segment_sizes(encoder: list[VAESegment], decoder: list[VAESegment], height: int, width: int, vae_factor: int
                  ) -> dict[str, int]:
    """Each segment's symbolic dimensions when a ``height`` x ``width`` VAE input is one tile."""
    sizes = {}
    for kind, segments, size in ((ENCODER, encoder, (height, width)),
                                 (DECODER, decoder, (height // vae_factor, width // vae_factor))):
        for index, segment in enumerate(segments):
            out = (segment.out_size(size[0]), segment.out_size(size[1]))
            sizes.update(zip(segment_dims(kind, index), (*size, *out), strict=True))
            size = out
    return sizes


class SegmentChains:
    """The chains of a bundle's VAE segments: the family's fixed chains come first (``first`` of them), then one
    chain per encoder segment, then one per decoder segment."""

    def __init__(self, first: int, encoder: list[VAESegment], decoder: list[VAESegment],
                 conditioning: tuple[TensorIO, ...] = ()):
        self.first = first
        self.segments = {ENCODER: encoder, DECODER: decoder}
        self.conditioning = conditioning

    def variant(self, kind: str, index: int) -> int:
        return self.first + index + (len(self.segments[ENCODER]) if kind == DECODER else 0)

    def segment(self, variant: int) -> tuple[str, int]:
        index = variant - self.first
        encoders = len(self.segments[ENCODER])
        if 0 <= index < encoders:
            return ENCODER, index
        if 0 <= index - encoders < len(self.segments[DECODER]):
            return DECODER, index - encoders
        raise SRError(f"the bundle has no chain {variant}")

    def plan(self, variant: int, batch: int, height: int, width: int) -> ChainPlan:
        """The one call of a segment's chain on ``batch`` tiles of ``height`` x ``width`` px at its level."""
        kind, index = self.segment(variant)
        segment = self.segments[kind][index]
        io = segment_io(kind, index, segment, self.conditioning)
        sizes = {"batch": batch, **dict(zip(segment_dims(kind, index), (height, width, segment.out_size(height),
                                                                      segment.out_size(width)), strict=True))}
        feeds = tuple(LR_FEED if t.name == "x" else t.name for t in io.inputs)
        return ChainPlan(batch, (io.call(x=LR_FEED),), {}, feeds, "y", sizes)
