"""The numeric precision of a bundle's engines, and of each tensor they take and give."""

from __future__ import annotations

from enum import Enum

import numpy as np


class Precision(str, Enum):
    FP32 = "fp32"
    FP16 = "fp16"

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(np.float32 if self is Precision.FP32 else np.float16)

    @classmethod
    def of_numpy(cls, dtype: str | np.dtype) -> Precision:
        """The precision of a manifest tensor's numpy dtype name ("float32" / "float16")."""
        return cls.FP32 if np.dtype(dtype) == np.float32 else cls.FP16
