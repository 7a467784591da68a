"""The manifest's record of one segment of the official tiled VAE (a network cut at its group norms)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Resize(IntEnum):
    """How a VAE segment changes the spatial size: its downsampler (//2) or upsampler (x2), if any."""

    NONE = 0
    UP = 1
    DOWN = -1


@dataclass
class VAESegment:
    """What one segment of the tiled VAE computes: from a group norm (with statistics gathered over all
    tiles) to the input of the next one. Channel counts are fixed at export; spatial sizes are dynamic."""

    in_channels: int
    out_channels: int
    norm_groups: int | None  # the group norm it starts with (None: the first segment, which has none)
    next_groups: int | None  # groups of the norm its output feeds (None: the last segment)
    residual_in: int | None  # channels of the residual pending at its start (None: none)
    residual_out: int | None  # channels of the residual pending at its end, packed after ``out_channels``
    resize: Resize

    def out_size(self, size: int) -> int:
        if self.resize == Resize.UP:
            return 2 * size
        if self.resize == Resize.DOWN:  # diffusers' Downsample2D: pad (0, 1), 3x3 conv at stride 2
            return size // 2
        return size

    def problem(self) -> str | None:
        counts = (self.in_channels, self.out_channels, self.norm_groups or 1, self.next_groups or 1,
                  self.residual_in or 1, self.residual_out or 1)
        if min(counts) < 1:
            return f"VAE segment {self} has a non-positive channel or group count"
        return None


def segments_problem(encoder: list[VAESegment], decoder: list[VAESegment]) -> str | None:
    """Why a section's segment lists cannot be a VAE cut at its group norms, or None."""
    for name, segments in (("encoder", encoder), ("decoder", decoder)):
        if len(segments) < 2 or segments[0].norm_groups is not None or segments[-1].next_groups is not None:
            return f"the {name} segments do not start without a norm and end without statistics"
        if problem := next((p for s in segments if (p := s.problem())), None):
            return problem
    return None
