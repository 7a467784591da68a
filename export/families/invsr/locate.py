"""Where users keep the InvSR checkpoints, searched offline when no path is given."""

from __future__ import annotations

import os
from pathlib import Path

from sr_runtime.errors import SRError

NOISE_PREDICTOR_FILE = "noise_predictor_sd_turbo_v5.pth"
NOISE_PREDICTOR_ENV = "SR_EXPORT_NOISE_PREDICTOR"


def find_default_noise_predictor() -> Path | None:
    """$SR_EXPORT_NOISE_PREDICTOR, then ./weights/<official name> (the official download folder)."""
    env = os.environ.get(NOISE_PREDICTOR_ENV)
    if env:
        return Path(env)
    candidate = Path("weights") / NOISE_PREDICTOR_FILE
    return candidate if candidate.is_file() else None


def find_checkpoints(sd_turbo: str | Path | None, noise_predictor: str | Path | None) -> tuple[Path, Path] | None:
    """Both checkpoint paths, from the options or the default places; None when neither is given or found.

    Half an answer (one given or found, the other not) is an error: silently mixing a real checkpoint
    with demo weights would produce meaningless images that look like a real run.
    """
    from ...sd.loading import find_default_sd
    from ...sd.models import SD_TURBO

    sd = Path(sd_turbo) if sd_turbo else find_default_sd(SD_TURBO)
    npred = Path(noise_predictor) if noise_predictor else find_default_noise_predictor()
    if sd is None and npred is None:
        return None
    if sd is None:
        raise SRError(f"found the noise predictor {npred} but no SD-Turbo; pass --sd-turbo DIR")
    if npred is None:
        raise SRError(
            f"found SD-Turbo at {sd} but no noise predictor; pass --noise-predictor PTH "
            f"or put {NOISE_PREDICTOR_FILE} in ./weights"
        )
    return sd, npred
