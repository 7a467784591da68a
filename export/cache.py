"""The sr-export cache: exported ONNX graphs, demo and benchmark checkpoints, reference bundles.

Every entry is a folder filled once into a scratch folder and renamed into place with a ``complete``
marker (``bundle.atomic_folder``), so an interrupted fill never looks finished.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .bundle import atomic_folder
from .reporting import Report

COMPLETE = "complete"
DEMO_SEED = 0  # the built-in demo models' random weights


def cache_root() -> Path:
    return Path(os.environ.get("SR_EXPORT_CACHE") or Path.home() / ".cache" / "sr-export")


def cached_folder(folder: Path, fill: Callable[[Path], None], report: Report | None = None, what: str = "") -> Path:
    """``folder``, filled by ``fill(scratch_folder)`` unless a complete one is already there."""
    if (folder / COMPLETE).is_file():
        if report and what:
            report(f"reusing {what} from {folder}")
        return folder
    if report and what:
        report(f"writing {what} to {folder}")
    with atomic_folder(folder) as tmp:
        fill(tmp)
        (tmp / COMPLETE).write_text("ok\n")
    return folder
