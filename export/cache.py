"""The sr-export cache: exported ONNX graphs, demo and benchmark checkpoints, reference bundles.

The cache folder carries a mark (``sr-export-cache.json``) written when sr-export makes it; a folder
without it that holds anything is a user's, and sr-export neither writes nor prunes there. Every entry is
a folder filled once, under its lock, into a scratch folder that is renamed into place
(``bundle.atomic_folder``); its ``complete`` marker lists the sha256 of every file. A reused entry is
checked against them first, and a damaged one is rebuilt, so damage never travels from the cache into
a bundle (and bundles get copies, never links, so none travels back).

Nothing evicts entries by itself (a full-size benchmark's bundles take tens of GB): the marker's time is
when the entry was last written or reused, and ``prune`` removes the entries no run has used since a date.
A process holds a shared lock on every entry it uses until it exits, so an entry a build is still reading
is never pruned from under it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sr_runtime.bounded_parse import read_json
from sr_runtime.bundle_check import sha256_file
from sr_runtime.errors import SRError
from sr_runtime.images import write_atomically

from .atomic_folders import OLD_MARK, TMP_MARK, atomic_folder_locked, folder_lock, lock_file
from .reporting import Report

COMPLETE = "complete"
CACHE_MARK = "sr-export-cache.json"
CACHE_FORMAT = "sr-export-cache/1"
ENTRY_FORMAT = "sr-export-cache-entry/1"
DEMO_SEED = 0  # the built-in demo models' random weights
USE_LOCK = "use"  # the lock kind of an entry's users (shared) and of prune (exclusive)


def _has_mark(root: Path) -> bool:
    try:
        mark = read_json(root / CACHE_MARK, "the cache mark")
    except SRError:
        return False
    return isinstance(mark, dict) and mark.get("format") == CACHE_FORMAT


def cache_root(create: bool = True) -> Path:
    """The cache folder ($SR_EXPORT_CACHE, default ~/.cache/sr-export), made and marked as sr-export's if it is
    new or empty (``create``). A folder that holds anything but lacks the mark is refused."""
    root = Path(os.environ.get("SR_EXPORT_CACHE") or Path.home() / ".cache" / "sr-export")
    holds_anything = root.is_dir() and any(root.iterdir())
    if _has_mark(root):  # read after the listing: a new cache's mark is written before anything else
        return root
    if holds_anything or (root.exists() and not root.is_dir()):
        raise SRError(f"the cache folder {root} holds what sr-export did not put there (it has no {CACHE_MARK}); "
                      "point SR_EXPORT_CACHE at a new or empty folder (a cache of an sr-export before 0.3 has no mark: "
                      "remove it)")
    if create:
        root.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"format": CACHE_FORMAT}) + "\n"
        write_atomically(root / CACHE_MARK, lambda file: file.write(text.encode()))
    return root


def cache_key(fields: dict) -> str:
    """A cache entry's name from everything its contents depend on."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _file_hashes(folder: Path) -> dict[str, str]:
    return {str(f.relative_to(folder)): sha256_file(f) for f in sorted(folder.rglob("*")) if f.is_file()}


def _marked_files(folder: Path) -> dict[str, Any] | None:
    """The files an entry's marker lists (name -> sha256), or None where the marker is not sr-export's."""
    try:
        marker = read_json(folder / COMPLETE, "the cache entry marker")
    except SRError:
        return None
    if not isinstance(marker, dict) or marker.get("format") != ENTRY_FORMAT or not isinstance(marker.get("files"), dict):
        return None
    return marker["files"]


def _damage(folder: Path) -> str | None:
    """None when every file the marker lists is there with its sha256, else what is wrong."""
    hashes = _marked_files(folder)
    if hashes is None:
        return "its marker is unreadable"
    changed = [name for name, digest in hashes.items()
               if not (folder / name).is_file() or sha256_file(folder / name) != digest]
    return f"{', '.join(changed)} changed" if changed else None


# The entries this process uses, each under a shared lock until the process exits (or prunes it itself).
_IN_USE: dict[Path, IO] = {}


def _use(folder: Path) -> None:
    path = lock_file(folder, USE_LOCK)
    if path not in _IN_USE:
        handle = open(path, "a")  # noqa: SIM115 (held until the process exits)
        fcntl.flock(handle, fcntl.LOCK_SH)
        _IN_USE[path] = handle


def _stop_using(folder: Path) -> None:
    if handle := _IN_USE.pop(lock_file(folder, USE_LOCK), None):
        handle.close()


def cached_folder(folder: Path, fill: Callable[[Path], None], report: Report | None = None, what: str = "") -> Path:
    """``folder``, filled by ``fill(scratch_folder)`` unless an intact complete one is already there."""
    say = report if report and what else (lambda message: None)
    folder.parent.mkdir(parents=True, exist_ok=True)
    _use(folder)
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
            (tmp / COMPLETE).write_text(json.dumps({"format": ENTRY_FORMAT, "files": _file_hashes(tmp)}, indent=1))
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
    """Every entry (``KIND/NAME`` with a marker of sr-export's) and leftover in the cache, oldest use first,
    leftovers first."""
    root = cache_root(create=False)
    entries = []
    for folder in sorted(root.glob("*/*")) if root.is_dir() else []:
        if not folder.is_dir() or folder.is_symlink() or folder.parent.is_symlink():
            continue
        if _marked_files(folder) is not None:
            entries.append(CacheEntry(folder, _size(folder), (folder / COMPLETE).stat().st_mtime))
        elif _LEFTOVER.fullmatch(folder.name):
            entries.append(CacheEntry(folder, _size(folder), None))
    return sorted(entries, key=lambda e: e.last_used or 0.0)


def prune(unused_days: float, report: Report) -> tuple[list[CacheEntry], list[CacheEntry]]:
    """Removes the entries no run has written or reused for ``unused_days`` days, and killed writers' leftovers;
    an entry another process is writing or using now is left alone. Returns what was removed and what was kept."""
    cutoff = time.time() - unused_days * 86400
    entries, removed = cache_entries(), []
    for entry in entries:
        _stop_using(entry.folder)  # this process's own use does not keep it
        with folder_lock(entry.lock_folder, wait=False) as writable, \
                folder_lock(entry.folder, wait=False, kind=USE_LOCK) as unused:
            if not writable or not unused:
                report(f"skipping {entry.name}: a run is {'writing' if not writable else 'using'} it")
                continue
            marker = entry.folder / COMPLETE
            if entry.last_used is not None and (not marker.is_file() or marker.stat().st_mtime > cutoff):
                continue  # used since (the listing's time may be older than the marker's, read under the lock)
            shutil.rmtree(entry.folder)
            removed.append(entry)
    return removed, [e for e in entries if e not in removed]
