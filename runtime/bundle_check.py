"""``inspect --verify``: recompute every engine file's sha256 and compare it with the manifest.

``read_manifest`` only checks that files exist with the right size (cheap, on every load); this reads
every byte, so it also finds files that were corrupted or swapped in place.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .errors import SRError
from .manifest import read_manifest
from .version import TOOL_VERSION

CHUNK = 16 * 2**20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def verify_bundle(path: str | Path, tool_version: str = TOOL_VERSION) -> list[str]:
    """The files checked; an SRError naming every file whose sha256 differs from the manifest's."""
    bundle = Path(path)
    manifest = read_manifest(bundle, tool_version)
    checked, mismatched = [], []
    for graph in manifest.graphs.values():
        for record in graph.files():
            checked.append(record.file)
            if sha256_file(bundle / record.file) != record.sha256:
                mismatched.append(record.file)
    if mismatched:
        raise SRError(f"bundle {bundle}: {', '.join(mismatched)} changed since the build (sha256 differs); rebuild it")
    return checked
