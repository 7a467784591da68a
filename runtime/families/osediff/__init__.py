"""OSEDiff (cswry/OSEDiff) on the runtime side."""

from .family import OSEDiffFamily

__all__ = ["OSEDiffFamily"]
