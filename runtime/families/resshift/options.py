"""ResShift's per-image options (``Upscaler.upscale`` keywords) and how the defaults resolve."""

from __future__ import annotations

from dataclasses import dataclass

from ...checks import is_int, require_positive_int
from ...errors import SRError
from .noise import DEFAULT_SEED

# The official CLIs' chopping (LR px): --chop_size 512 with stride 448, 256 with 224 (both CLIs), 64 with
# 48 (ResShift's); another size gets 7/8 of it as the stride, as 512 and 256 do.
OFFICIAL_CHOP_SIZE = 512
OFFICIAL_STRIDES = {512: 448, 256: 224, 64: 48}


def default_stride(chop_size: int) -> int:
    return OFFICIAL_STRIDES.get(chop_size, max(1, chop_size * 7 // 8))


@dataclass(frozen=True)
class Chopping:
    size: int  # LR px per patch side (a side shorter than it is one patch of its own length)
    stride: int


@dataclass(frozen=True)
class ResShiftOptions:
    seed: int | None = None  # None: the official default 12345
    zero_noise: bool = False  # every draw zero: the deterministic posterior means
    chop_size: int | None = None  # LR px; None: the bundle's tile (the PyTorch reference: the official 512)
    chop_stride: int | None = None  # None: the official stride for that size

    def __post_init__(self):
        if self.seed is not None and not is_int(self.seed, 0):
            raise SRError(f"seed {self.seed!r} must be a non-negative integer")
        if not isinstance(self.zero_noise, bool):
            raise SRError(f"zero_noise must be true or false, got {self.zero_noise!r}")
        if self.zero_noise and self.seed is not None:
            raise SRError("give a seed or zero noise, not both")
        require_positive_int("chop size", self.chop_size, optional=True)
        require_positive_int("chop stride", self.chop_stride, optional=True)

    @property
    def noise_seed(self) -> int | None:
        """The seed of the noise stream; None when every draw is zero."""
        if self.zero_noise:
            return None
        return DEFAULT_SEED if self.seed is None else self.seed

    def chopping(self, default_size: int) -> Chopping:
        size = self.chop_size or default_size
        stride = self.chop_stride or default_stride(size)
        if stride > size:  # the official splitter asserts it: a larger stride would leave gaps
            raise SRError(f"chop stride {stride} is above the chop size {size}")
        return Chopping(size, stride)
