"""Writing engine bundles (and cache entries) atomically, safely, one writer at a time.

Everything is written into a hidden sibling folder that is renamed into place only when complete,
with the manifest written last; an interrupted build leaves only a hidden ``.tmp`` folder without a
manifest, which the next writer of the same folder removes. Writers of one folder take turns under
a lock (a file per folder in the temp directory), so two builds at once never pull each other's
files away. Only a bundle folder (or an empty one) is ever replaced: a build never deletes a user's
folder, file or working directory.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sr_runtime.bounded_parse import check_document, read_json
from sr_runtime.errors import SRError
from sr_runtime.images import fitted_name
from sr_runtime.manifest import BUNDLE_FORMAT, MANIFEST_NAME, Manifest
from sr_runtime.records import record_dict

TMP_MARK = ".tmp-"  # a folder being written
OLD_MARK = ".old-"  # a folder being replaced
# The FICLONE ioctl (linux/fs.h): a copy-on-write clone where the file system has them (btrfs, xfs).
FICLONE = 0x40049409


def _lock_dir() -> Path:
    folder = Path(tempfile.gettempdir()) / f"sr-export-locks-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def lock_file(folder: Path, kind: str = "lock") -> Path:
    """The file whose lock of ``kind`` guards ``folder``: in the temp directory, so locking never writes beside
    a user's folder."""
    key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:32]
    return _lock_dir() / f"{key}.{kind}"


@contextmanager
def folder_lock(folder: Path, wait: bool = True, kind: str = "lock") -> Iterator[bool]:
    """Held while ``folder`` is written; blocks while another process writes it, or with ``wait=False``
    yields False at once instead (and holds nothing)."""
    with open(lock_file(folder, kind), "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True


def _recorded_files(manifest: dict) -> dict[str, int | None] | None:
    """The files a bundle manifest records (name -> size), in every format version; None if it records none."""
    graphs = manifest.get("graphs")
    if not isinstance(graphs, dict) or not graphs or not all(isinstance(g, dict) for g in graphs.values()):
        return None
    records = [*graphs.values(), *(r for g in graphs.values() for r in g.get("data_files") or []),
               *(manifest.get("files") or [])]
    if not all(isinstance(r, dict) and isinstance(r.get("file"), str) for r in records):
        return None
    return {r["file"]: r.get("size") for r in records}


def bundle_contents_problem(folder: Path) -> str | None:
    """None when ``folder`` holds exactly what an sr-export bundle holds: its manifest and the files that
    records, each a plain file of the recorded size, and nothing else (bundles of other versions included:
    a rebuild replaces them). Anything else is a user's folder, or a bundle a user put files into."""
    if not (folder / MANIFEST_NAME).is_file():
        return f"it has no {MANIFEST_NAME}"
    try:
        manifest = read_json(folder / MANIFEST_NAME, "its manifest")
    except SRError as err:
        return f"{err}"
    files = _recorded_files(manifest) if isinstance(manifest, dict) and manifest.get("format") == BUNDLE_FORMAT else None
    if files is None:
        return f"{folder / MANIFEST_NAME} is not an sr-export bundle manifest"
    expected = {MANIFEST_NAME, *files}
    present = {entry.name: entry for entry in os.scandir(folder)}
    if extra := sorted(set(present) - expected):
        return f"it also holds {', '.join(extra[:3])}{' and more' if len(extra) > 3 else ''}, which no bundle has"
    for name in sorted(expected):
        entry = present.get(name)
        if entry is None or not entry.is_file(follow_symlinks=False):
            return f"{name}, which its manifest records, is {'missing' if entry is None else 'not a plain file'}"
        if isinstance(size := files.get(name), int) and entry.stat(follow_symlinks=False).st_size != size:
            return f"{name} is not the size its manifest records"
    return None


def bundle_target_problem(final: Path) -> str | None:
    """Why ``final`` must not become (or be replaced by) a bundle folder, or None."""
    resolved = final.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents or resolved == Path.home().resolve():
        return f"{final} is the working directory, one of its parents or the home folder; give a new folder"
    if final.is_symlink():
        return f"{final} is a symbolic link; give the folder itself"
    if not final.exists():
        return None
    if not final.is_dir():
        return f"{final} is an existing file; a bundle is a folder, and only a bundle folder is ever replaced"
    if any(final.iterdir()) and (problem := bundle_contents_problem(final)):
        return (f"{final} is a folder that is not an sr-export bundle ({problem}); only a bundle folder (or an empty "
                "one) is replaced")
    return None


def check_bundle_target(final: Path) -> None:
    if problem := bundle_target_problem(final):
        raise SRError(problem)


def _scratch(final: Path, mark: str) -> str:
    """The start of a hidden sibling's name: ".<name><mark>", followed by 8 hex digits."""
    return f".{fitted_name(final.name, len(f'.{mark}12345678'))}{mark}"


def remove_stale_partials(final: Path) -> None:
    """Scratch folders of writers that were killed; only called under ``final``'s lock."""
    for stale in final.parent.glob(f"{glob.escape(_scratch(final, TMP_MARK))}*"):
        shutil.rmtree(stale, ignore_errors=True)


@contextmanager
def atomic_folder_locked(final: Path, replaceable: Callable[[Path], str | None] | None = None) -> Iterator[Path]:
    """``atomic_folder`` for a caller that already holds ``folder_lock(final)``."""
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(final)
    tmp = final.parent / f"{_scratch(final, TMP_MARK)}{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        if (final.exists() or final.is_symlink()) and replaceable and (problem := replaceable(final)):
            raise SRError(problem)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = final.parent / f"{_scratch(final, OLD_MARK)}{uuid.uuid4().hex[:8]}"
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_folder(final: Path, replaceable: Callable[[Path], str | None] | None = None) -> Iterator[Path]:
    """Yields a scratch folder; on normal exit it replaces ``final`` (if ``replaceable(final)`` finds
    no problem with that), on error it is deleted."""
    final.parent.mkdir(parents=True, exist_ok=True)
    with folder_lock(final), atomic_folder_locked(final, replaceable) as tmp:
        yield tmp


def write_manifest(folder: Path, manifest: Manifest) -> None:
    """Written last, and atomically, so a manifest means every file it names is already there. A constant the
    runtime would refuse (a NaN or an infinity from a config's extreme values) fails the build here, named."""
    check_document(record_dict(manifest), "the bundle's manifest")
    tmp = folder / f"{MANIFEST_NAME}.partial"
    tmp.write_text(manifest.to_json())
    os.replace(tmp, folder / MANIFEST_NAME)


def copy_file(src: Path, dst: Path) -> None:
    """A copy of ``src`` that shares nothing writable with it: a reflink where the file system clones
    (instant, copy-on-write), else a plain copy. Never a hard link: editing a bundle file must not
    change the cache it came from."""
    with open(src, "rb") as source, open(dst, "wb") as target:
        try:
            fcntl.ioctl(target.fileno(), FICLONE, source.fileno())
            return
        except OSError:
            pass
    shutil.copyfile(src, dst)
