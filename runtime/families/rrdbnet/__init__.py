"""The RRDBNet x4 family (Real-ESRGAN, BSRGAN) on the runtime side."""

from .family import RRDBNetFamily, RRDBNetSection

__all__ = ["RRDBNetFamily", "RRDBNetSection"]
