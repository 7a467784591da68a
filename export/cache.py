"""The sr-export cache: exported ONNX graphs, demo and benchmark checkpoints, reference bundles.

Every entry is a folder filled once, under its lock, into a scratch folder that is renamed into place
(``bundle.atomic_folder``); its ``complete`` marker lists the sha256 of every file. A reused entry is
checked against them first, and a damaged one is rebuilt, so damage never travels from the cache into
a bundle (and bundles get copies, never links, so none travels back).

Nothing evicts entries by itself (a full-size benchmark's bundles take tens of GB): the marker's time is
when the entry was last written or reused, and ``prune`` removes the entries no run has used since a date.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sr_runtime.bundle_check import sha256_file

from .bundle import OLD_MARK, TMP_MARK, atomic_folder_locked, folder_lock
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
                os.utime(folder / COMPLETE)  # its last use, for prune
                return folder
            (report or print)(f"WARNING: the cache entry {folder} is damaged ({damage}); writing it again")
            shutil.rmtree(folder)
        say(f"writing {what} to {folder}")
        with atomic_folder_locked(folder) as tmp:
            fill(tmp)
            (tmp / COMPLETE).write_text(json.dumps(_file_hashes(tmp), indent=1))
    return folder


# A writer's scratch folder or a replaced entry, left behind where that process was killed: ".NAME.tmp-1a2b3c4d".
_LEFTOVER = re.compile(rf"\.(?P<name>.+)(?:{re.escape(TMP_MARK)}|{re.escape(OLD_MARK)})[0-9a-f]{{8}}")


@dataclass(frozen=True)
class CacheEntry:
    folder: Path
    size: int  # bytes
    last_used: float | None  # when it was last written or reused (epoch seconds); None: a killed writer's leftover

    @property
    def name(self) -> str:
        return f"{self.folder.parent.name}/{self.folder.name}"

    @property
    def lock_folder(self) -> Path:
        """The folder whose lock guards this one: for a leftover, the entry it was being written to."""
        found = _LEFTOVER.fullmatch(self.folder.name)
        return self.folder.parent / found["name"] if found else self.folder


def _size(folder: Path) -> int:
    return sum(f.lstat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())


def cache_entries() -> list[CacheEntry]:
    """Every entry (``KIND/NAME`` with a marker) and leftover in the cache, oldest use first, leftovers first."""
    entries = []
    for folder in sorted(cache_root().glob("*/*")):
        if not folder.is_dir() or folder.is_symlink():
            continue
        if (folder / COMPLETE).is_file():
            entries.append(CacheEntry(folder, _size(folder), (folder / COMPLETE).stat().st_mtime))
        elif _LEFTOVER.fullmatch(folder.name):
            entries.append(CacheEntry(folder, _size(folder), None))
    return sorted(entries, key=lambda e: e.last_used or 0.0)


def prune(unused_days: float, report: Report) -> tuple[list[CacheEntry], list[CacheEntry]]:
    """Removes the entries no run has written or reused for ``unused_days`` days, and killed writers' leftovers;
    an entry another process is writing now is left alone. Returns what was removed and what was kept."""
    cutoff = time.time() - unused_days * 86400
    entries, removed = cache_entries(), []
    for entry in entries:
        with folder_lock(entry.lock_folder, wait=False) as held:
            if not held:
                report(f"skipping {entry.name}: a run is writing it")
                continue
            marker = entry.folder / COMPLETE
            if entry.last_used is not None and (not marker.is_file() or marker.stat().st_mtime > cutoff):
                continue  # used since (the listing's time may be older than the marker's, read under the lock)
            shutil.rmtree(entry.folder)
            removed.append(entry)
    return removed, [e for e in entries if e not in removed]
