"""Benchmark bundles, built once into the cache and reused while nothing they are built from changed:
a report run again (or another row of the same run) opens them instead of building them again."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

from sr_runtime.version import TOOL_VERSION

from ..builders.backends import select_backend
from ..builders.bundle_builder import BuildOptions, build_bundle
from ..cache import cache_key, cache_root, cached_folder
from ..families.base import FamilySource
from ..reporting import Report

BUNDLE = "bundle"  # the bundle's folder inside its cache entry (beside the entry's marker)


def cached_bundle(source: FamilySource, opts: BuildOptions, stem: str, report: Report) -> Path:
    """``source``'s bundle for ``opts`` (its ``output`` is ignored): keyed by the weights, every build option,
    the backend's version and sr-export's, and checked file by file before it is reused."""
    backend = select_backend(opts.backend)
    options = {name: str(value) for name, value in asdict(replace(opts, output=None)).items()}
    key = cache_key({"tool": TOOL_VERSION, "weights": source.fingerprint(), "backend_version": backend.version(),
                     **options})
    folder = cache_root() / "bench-bundles" / f"{stem}-{key[:12]}"
    cached_folder(folder, lambda tmp: build_bundle(source, replace(opts, output=tmp / BUNDLE), report=report),
                  report, f"the {stem} bundle")
    return folder / BUNDLE
