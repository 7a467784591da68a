"""OSEDiff's per-image options (``Upscaler.upscale`` keywords) and how their defaults resolve to the official
command line's (``test_osediff.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from ...color import NO_COLOR_FIX, color_fix_method
from ...errors import SRError
from ...sd.one_step import OneStepTiles

MAX_SEED = 2**63 - 1
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
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)
                                      or not 0 <= self.seed <= MAX_SEED):
            raise SRError(f"seed {self.seed!r} must be an integer from 0 to {MAX_SEED}")
        self.check_tiles()

    @property
    def method(self) -> str | None:
        """The colour fix that runs: the official AdaIN unless another or "none" is asked for."""
        return None if self.color_fix == NO_COLOR_FIX else self.color_fix or ADAIN
