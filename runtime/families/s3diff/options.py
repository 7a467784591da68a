"""S3Diff's per-image options (``Upscaler.upscale`` keywords) and how their defaults resolve to the official
command line's (``src/my_utils/testing_utils.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from ...color import NO_COLOR_FIX, color_fix_method
from ...errors import SRError
from ...sd.one_step import OneStepTiles
from ...sd.posterior import check_seed

WAVELET = "wavelet"  # the default of the official --align_method
COLOR_FIXES = (WAVELET, "adain")


@dataclass(frozen=True)
class S3DiffOptions(OneStepTiles):
    color_fix: str | None = None  # "wavelet" (the default, as the official --align_method), "adain" or "none"
    seed: int | None = None  # draw the VAE posterior sample with numpy; None: the posterior mean

    def __post_init__(self):
        if color_fix_method(self.color_fix) not in (None, *COLOR_FIXES):
            raise SRError(f"colour fix {self.color_fix!r}: S3Diff's official --align_method has wavelet (the default), "
                          f"adain and nofix ({NO_COLOR_FIX!r} here)")
        check_seed(self.seed)
        self.check_tiles()

    @property
    def method(self) -> str | None:
        """The colour fix that runs: the official wavelet unless another or "none" is asked for."""
        return None if self.color_fix == NO_COLOR_FIX else self.color_fix or WAVELET
