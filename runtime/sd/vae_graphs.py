"""The graphs of the official tiled VAE's segments, as the runtime binds them: their names, their own spatial
dimensions and their inputs (the gathered group statistics, the pending residual, the family's conditioning of the
encoder, the decoder's eps)."""

from __future__ import annotations

from ..backends.base import ChainId, ChainPlan
from ..family import no_chain
from ..graph_io import GraphIO, TensorIO
from .vae_segment import VAESegment

ENCODER, DECODER = "encoder", "decoder"
SEGMENT_FEED = "x"  # a segment's main input (the tile at its level): its graph's input and the chain's host feed


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
    inputs = [TensorIO(SEGMENT_FEED, space)]
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


def segment_chain(kind: str, index: int) -> ChainId:
    """The chain of VAE segment ``index`` of the ENCODER or DECODER: its one call, fed its graph's inputs by name."""
    return ChainId(f"vae_{kind}_segment", index, main_feed=SEGMENT_FEED)


class SegmentChains:
    """The chains of a bundle's VAE segments (``segment_chain``): one per encoder segment, one per decoder segment,
    beside the family's own chains (``own``, which a refusal lists with them)."""

    def __init__(self, title: str, own: tuple[ChainId, ...], encoder: list[VAESegment], decoder: list[VAESegment],
                 conditioning: tuple[TensorIO, ...] = ()):
        self.title = title
        self.own = own
        self.segments = {ENCODER: encoder, DECODER: decoder}
        self.conditioning = conditioning

    @property
    def names(self) -> str:
        """The segment chains, in words (for a refusal)."""
        return ", ".join(f"{segment_chain(kind, 0).name} (index 0 to {len(segments) - 1})"
                         for kind, segments in self.segments.items())

    def segment(self, chain: ChainId) -> tuple[str, int] | None:
        """The (kind, index) of the segment ``chain`` runs, or None if it is no segment chain of the bundle."""
        for kind, segments in self.segments.items():
            if 0 <= chain.index < len(segments) and chain == segment_chain(kind, chain.index):
                return kind, chain.index
        return None

    def plan(self, chain: ChainId, batch: int, height: int, width: int) -> ChainPlan:
        """The one call of a segment's chain on ``batch`` tiles of ``height`` x ``width`` px at its level; the host
        feeds are its graph's inputs, under their own names. Any other chain is refused, naming every chain the
        family has."""
        found = self.segment(chain)
        if found is None:
            raise no_chain(self.title, chain, f"{', '.join(map(str, self.own))}, {self.names}")
        kind, index = found
        segment = self.segments[kind][index]
        io = segment_io(kind, index, segment, self.conditioning)
        sizes = {"batch": batch, **dict(zip(segment_dims(kind, index), (height, width, segment.out_size(height),
                                                                      segment.out_size(width)), strict=True))}
        return ChainPlan(batch, (io.call(),), {}, tuple(t.name for t in io.inputs), "y", sizes)
