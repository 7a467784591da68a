"""Writing engine bundles (and cache entries) atomically.

Everything is written into a hidden sibling folder that is renamed into place only when
complete, with the manifest written last; an interrupted build leaves only a hidden ``.tmp``
folder without a manifest, which the next build of the same bundle removes.
"""

from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path

from sr_runtime.manifest import MANIFEST_NAME, Manifest

TMP_MARK = ".tmp-"


def remove_stale_partials(final: Path) -> None:
    for stale in final.parent.glob(f".{final.name}{TMP_MARK}*"):
        shutil.rmtree(stale, ignore_errors=True)


@contextmanager
def atomic_folder(final: Path):
    """Yields a scratch folder; on normal exit it replaces ``final``, on error it is deleted."""
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(final)
    tmp = final.parent / f".{final.name}{TMP_MARK}{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def write_manifest(folder: Path, manifest: Manifest) -> None:
    """Written last, and atomically, so a manifest means every file it names is already there."""
    tmp = folder / f"{MANIFEST_NAME}.partial"
    tmp.write_text(manifest.to_json())
    os.replace(tmp, folder / MANIFEST_NAME)


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard link when possible: engines are large and the cached ONNX never changes in place."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
