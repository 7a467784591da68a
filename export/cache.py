"""The sr-export cache: exported ONNX graphs, demo and benchmark checkpoints, reference bundles.

Every entry is a folder filled once, under its lock, into a scratch folder that is renamed into place
(``bundle.atomic_folder``); its ``complete`` marker lists the sha256 of every file. A reused entry is
checked against them first, and a damaged one is rebuilt, so damage never travels from the cache into
a bundle (and bundles get copies, never links, so none travels back).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from sr_runtime.bundle_check import sha256_file

from .bundle import atomic_folder_locked, folder_lock
from .reporting import Report

COMPLETE = "complete"
DEMO_SEED = 0  # the built-in demo models' random weights


def cache_root() -> Path:
    return Path(os.environ.get("SR_EXPORT_CACHE") or Path.home() / ".cache" / "sr-export")


def cache_key(fields: dict) -> str:
    """A cache entry's name from everything its contents depend on."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _file_hashes(folder: Path) -> dict[str, str]:
    return {str(f.relative_to(folder)): sha256_file(f) for f in sorted(folder.rglob("*")) if f.is_file()}


def _damage(folder: Path) -> str | None:
    """None when every file the marker lists is there with its sha256, else what is wrong."""
    try:
        hashes = json.loads((folder / COMPLETE).read_text())
    except (OSError, ValueError):
        return "its marker is unreadable"
    if not isinstance(hashes, dict):
        return "its marker is unreadable"
    changed = [name for name, digest in hashes.items()
               if not (folder / name).is_file() or sha256_file(folder / name) != digest]
    return f"{', '.join(changed)} changed" if changed else None


def cached_folder(folder: Path, fill: Callable[[Path], None], report: Report | None = None, what: str = "") -> Path:
    """``folder``, filled by ``fill(scratch_folder)`` unless an intact complete one is already there."""
    say = report if report and what else (lambda message: None)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with folder_lock(folder):
        if (folder / COMPLETE).is_file():
            if (damage := _damage(folder)) is None:
                say(f"reusing {what} from {folder}")
                return folder
            (report or print)(f"WARNING: the cache entry {folder} is damaged ({damage}); writing it again")
            shutil.rmtree(folder)
        say(f"writing {what} to {folder}")
        with atomic_folder_locked(folder) as tmp:
            fill(tmp)
            (tmp / COMPLETE).write_text(json.dumps(_file_hashes(tmp), indent=1))
    return folder
