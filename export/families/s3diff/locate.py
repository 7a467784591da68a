"""Where users keep the S3Diff checkpoints, searched offline when no path is given."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sr_runtime.errors import SRError

from .checkpoint import FILE_NAME
from .de_net import FILE_NAME as DE_NET_FILE

CHECKPOINT_ENV = "SR_EXPORT_S3DIFF"
DE_NET_ENV = "SR_EXPORT_DE_NET"
# Where the official repository keeps the DEResNet weights (run_inference.sh --de_net_path), and ./weights.
DE_NET_PLACES = (Path("assets") / "mm-realsr" / DE_NET_FILE, Path("weights") / DE_NET_FILE)


@dataclass(frozen=True)
class S3DiffPaths:
    sd_turbo: Path
    checkpoint: Path
    de_net: Path


def _first(given: str | Path | None, env: str, places: tuple[Path, ...]) -> Path | None:
    if given:
        return Path(given)
    if os.environ.get(env):
        return Path(os.environ[env])
    return next((place for place in places if place.is_file()), None)


def find_checkpoints(sd_turbo: str | Path | None, checkpoint: str | Path | None, de_net: str | Path | None
                     ) -> S3DiffPaths | None:
    """The three paths from the options, $SR_EXPORT_S3DIFF / $SR_EXPORT_DE_NET, ./weights (and the official
    assets/ folder for de_net.pth), the SD-Turbo search of the SD layer; None when none is given or found.

    Some found and some not is an error: mixing real checkpoints with demo weights would give images that
    look like a real run."""
    from ...sd.loading import find_default_sd
    from ...sd.models import SD_TURBO

    found = {
        "--sd-turbo DIR": Path(sd_turbo) if sd_turbo else find_default_sd(SD_TURBO),
        f"--checkpoint {FILE_NAME}": _first(checkpoint, CHECKPOINT_ENV, (Path("weights") / FILE_NAME,)),
        f"--de-net {DE_NET_FILE}": _first(de_net, DE_NET_ENV, DE_NET_PLACES),
    }
    missing = [flag for flag, path in found.items() if path is None]
    if len(missing) == len(found):
        return None
    if missing:
        have = ", ".join(str(path) for path in found.values() if path is not None)
        raise SRError(f"found {have} but not the rest of S3Diff; pass {' and '.join(missing)}")
    return S3DiffPaths(*found.values())
