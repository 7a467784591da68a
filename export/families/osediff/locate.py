"""Where users keep the OSEDiff checkpoints, searched offline when no path is given."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sr_runtime.errors import SRError

from .checkpoint import FILE_NAME
from .ram_checkpoint import DAPE_FILE, RAM_FILE, TAG_LIST_FILE, THRESHOLD_FILE

# The official repository's places: preset/models/ (osediff.pkl ships there; the README puts the RAM and DAPE
# downloads beside it) and ram/data/ (RAM's tag list and class thresholds, part of the repository).
MODELS_FOLDER = Path("preset") / "models"
RAM_DATA_FOLDER = Path("ram") / "data"
ENV = {FILE_NAME: "SR_EXPORT_OSEDIFF", RAM_FILE: "SR_EXPORT_RAM", DAPE_FILE: "SR_EXPORT_DAPE"}


@dataclass(frozen=True)
class OSEDiffPaths:
    sd21: Path
    checkpoint: Path
    ram: Path
    dape: Path
    tag_list: Path
    thresholds: Path


def _first(given: str | Path | None, name: str) -> Path | None:
    if given:
        return Path(given)
    if os.environ.get(ENV[name]):
        return Path(os.environ[ENV[name]])
    return next((place for place in (MODELS_FOLDER / name, Path("weights") / name) if place.is_file()), None)


def _tag_file(ram_data: str | Path | None, ram: Path | None, name: str) -> Path | None:
    """RAM's text files: in --ram-data, else beside the RAM checkpoint, else the official ram/data/."""
    if ram_data:
        return Path(ram_data) / name
    places = ([ram.parent / name] if ram is not None else []) + [RAM_DATA_FOLDER / name]
    return next((place for place in places if place.is_file()), None)


def find_checkpoints(sd21: str | Path | None, checkpoint: str | Path | None, ram: str | Path | None,
                     dape: str | Path | None, ram_data: str | Path | None) -> OSEDiffPaths | None:
    """The paths from the options, the variables, the official repository's folders and ./weights, and the
    SD-2.1-base search of the SD layer; None when none is given or found.

    Some found and some not is an error: mixing real checkpoints with demo weights would give images that
    look like a real run."""
    from ...sd.loading import find_default_sd
    from ...sd.models import SD21_BASE

    ram_path = _first(ram, RAM_FILE)
    checkpoints = {
        "--sd21 DIR": Path(sd21) if sd21 else find_default_sd(SD21_BASE),
        f"--checkpoint {FILE_NAME}": _first(checkpoint, FILE_NAME),
        f"--ram {RAM_FILE}": ram_path,
        f"--dape {DAPE_FILE}": _first(dape, DAPE_FILE),
    }
    if all(path is None for path in checkpoints.values()):
        return None
    found = {**checkpoints,
             f"--ram-data DIR ({TAG_LIST_FILE})": _tag_file(ram_data, ram_path, TAG_LIST_FILE),
             f"--ram-data DIR ({THRESHOLD_FILE})": _tag_file(ram_data, ram_path, THRESHOLD_FILE)}
    missing = [flag for flag, path in found.items() if path is None]
    if missing:
        have = ", ".join(str(path) for path in found.values() if path is not None)
        raise SRError(f"found {have} but not the rest of OSEDiff; pass {' and '.join(missing)}")
    return OSEDiffPaths(*found.values())
