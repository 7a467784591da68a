"""The model families sr-export exports, by name: one line each (the runtime's are in
``sr_runtime.families``)."""

from __future__ import annotations

from sr_runtime.errors import SRError

from .base import ExportFamily
from .invsr import InvSRExport
from .osediff import OSEDiffExport
from .resshift import ResShiftExport
from .rrdbnet import RRDBNetExport
from .s3diff import S3DiffExport

FAMILIES: dict[str, ExportFamily] = {family.name: family for family in (InvSRExport(), RRDBNetExport(), ResShiftExport(), S3DiffExport(),
                                                                                OSEDiffExport())}


def family_for_model(model: str) -> ExportFamily:
    """The family a ``--model`` value belongs to."""
    for family in FAMILIES.values():
        if model in family.models:
            return family
    raise SRError(f"unknown model {model!r}; choose one of {', '.join(all_models())}")


def family_named(name: str) -> ExportFamily:
    if name not in FAMILIES:
        raise SRError(f"sr-export has no {name!r} family; it exports {', '.join(FAMILIES)}")
    return FAMILIES[name]


def all_models() -> tuple[str, ...]:
    return tuple(model for family in FAMILIES.values() for model in family.models)
