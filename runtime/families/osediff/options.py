"""OSEDiff's per-image options (``Upscaler.upscale`` keywords) and how their defaults resolve to the official
command line's (``test_osediff.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from ...color import NO_COLOR_FIX, color_fix_method
from ...errors import SRError
from ...sd.one_step import OneStepTiles
from ...sd.posterior import check_seed

MAX_PROMPT = 4096  # characters: the tokenizer keeps 75 tokens of it anyway
ADAIN = "adain"  # the default of the official --align_method
COLOR_FIXES = (ADAIN, "wavelet")


@dataclass(frozen=True)
class OSEDiffOptions(OneStepTiles):
    color_fix: str | None = None  # "adain" (the default, as the official --align_method), "wavelet" or "none"
    prompt: str = ""  # the official --prompt: added after the tags
    seed: int | None = None  # draw the VAE posterior sample with numpy; None: the posterior mean

    def __post_init__(self):
        if color_fix_method(self.color_fix) not in (None, *COLOR_FIXES):
            raise SRError(f"colour fix {self.color_fix!r}: OSEDiff's official --align_method has adain (the default), "
                          f"wavelet and nofix ({NO_COLOR_FIX!r} here)")
        if not isinstance(self.prompt, str) or len(self.prompt) > MAX_PROMPT:
            raise SRError(f"the prompt must be a text of at most {MAX_PROMPT} characters")
        check_seed(self.seed)
        self.check_tiles()

    @property
    def method(self) -> str | None:
        """The colour fix that runs: the official AdaIN unless another or "none" is asked for."""
        return None if self.color_fix == NO_COLOR_FIX else self.color_fix or ADAIN
