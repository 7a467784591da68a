"""S3Diff (degradation-guided one-step SR on SD-Turbo) on the runtime side."""

from .family import S3DiffFamily

__all__ = ["S3DiffFamily"]
