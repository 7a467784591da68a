"""The numeric precision of a bundle's engines, and of each tensor they take and give."""

from __future__ import annotations

from enum import Enum

import numpy as np


class Precision(str, Enum):
    FP32 = "fp32"
    FP16 = "fp16"
    # bfloat16 arithmetic inside the engines (OpenVINO, on CPUs with bf16 instructions); tensors in and out
    # stay fp32, as numpy has no bfloat16.
    BF16 = "bf16"

    @property
    def io(self) -> Precision:
        """The precision of the tensors a bundle of this precision takes and gives."""
        return Precision.FP16 if self is Precision.FP16 else Precision.FP32

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(np.float16 if self is Precision.FP16 else np.float32)

    @classmethod
    def of_numpy(cls, dtype: str | np.dtype) -> Precision:
        """The precision of a manifest tensor's numpy dtype name ("float32" / "float16")."""
        return cls.FP32 if np.dtype(dtype) == np.float32 else cls.FP16
