"""Every file of a bundle against the sha256 its manifest records.

``read_manifest`` only checks that the files exist with the right size; this reads every byte, so it
also finds a file corrupted or swapped in place. ``Upscaler.from_bundle`` runs it when it opens a
bundle (the files are read right after anyway, so it costs one extra pass over data in the page
cache), and ``sr-export inspect --verify`` on demand.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .bounded_parse import regular_file
from .bundle_manifest import read_manifest
from .errors import SRError
from .manifest import Manifest
from .version import TOOL_VERSION

CHUNK = 16 * 2**20


def sha256_file(path: Path, what: str = "file") -> str:
    regular_file(path, what)
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def check_files(bundle: Path, manifest: Manifest) -> list[str]:
    """The files checked; an SRError naming every file whose sha256 differs from the manifest's."""
    checked, mismatched = [], []
    for _, record in manifest.all_files():
        checked.append(record.file)
        if sha256_file(bundle / record.file) != record.sha256:
            mismatched.append(record.file)
    if mismatched:
        raise SRError(f"bundle {bundle}: {', '.join(mismatched)} changed since the build (sha256 differs); rebuild it")
    return checked


def verify_bundle(path: str | Path, tool_version: str = TOOL_VERSION) -> list[str]:
    bundle = Path(path)
    return check_files(bundle, read_manifest(bundle, tool_version))
