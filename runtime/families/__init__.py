"""The model families this runtime runs, by the manifest's ``pipeline.family``: one line each."""

from __future__ import annotations

from ..errors import SRError
from ..family import Family
from .invsr import InvSRFamily
from .osediff import OSEDiffFamily
from .resshift import ResShiftFamily
from .rrdbnet import RRDBNetFamily
from .s3diff import S3DiffFamily

FAMILIES: dict[str, type[Family]] = {family.name: family for family in (InvSRFamily, RRDBNetFamily, ResShiftFamily, S3DiffFamily,
                                                                         OSEDiffFamily)}


def family_class(name: str) -> type[Family]:
    if name not in FAMILIES:
        raise SRError(f"the bundle holds a {name!r} model; this runtime runs {', '.join(FAMILIES)}")
    return FAMILIES[name]
