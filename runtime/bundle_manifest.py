"""A bundle's manifest typed through and through: the contract (``manifest``) with the section of the family it
names, as this runtime's families type it."""

from __future__ import annotations

from pathlib import Path

from . import manifest as contract
from .families import family_class
from .manifest import Manifest


def section_type(family: str) -> type:
    return family_class(family).section_type


def parse_manifest(data: dict) -> Manifest:
    return contract.parse_manifest(data, section_type)


def read_manifest(bundle: Path, tool_version: str) -> Manifest:
    """``manifest.read_manifest``: every refusal one line that says what to do."""
    return contract.read_manifest(bundle, tool_version, section_type)
