"""Which ONNX graphs a build exports, and how TensorRT types the network built from them.

The one decision, in one place:

| backend                | bundle precision | TensorRT                  | ONNX exported | network typing               |
|------------------------|------------------|---------------------------|---------------|------------------------------|
| onnxruntime-*          | fp32 / fp16      | -                         | same          | -                            |
| tensorrt               | fp32             | any                       | fp32          | as the graph says (fp32/TF32)|
| tensorrt               | fp16             | 11, or 10 --strongly-typed| fp16          | strongly typed               |
| tensorrt               | fp16             | 10 (default)              | fp32          | weak, BuilderFlag.FP16 with  |
|                        |                  |                           |               | fp32 islands (fp32_islands)  |

TensorRT 11 has no weak typing, so the fp16 graph (norms and sigma arithmetic kept fp32 by the
export) is the only way to fp16 there. TensorRT 10's weak typing lets its tactic search pick fp16 per
layer from the fp32 graph; layer constraints then pin the parts the fp16 export keeps in fp32.
"""

from __future__ import annotations

from dataclasses import dataclass

from sr_runtime.backends.tensorrt_compat import always_strongly_typed, check_supported, installed_version
from sr_runtime.errors import SRError
from sr_runtime.precision import Precision


@dataclass(frozen=True)
class TensorRTTyping:
    onnx_precision: Precision  # the ONNX export the engines are built from
    strongly_typed: bool  # NetworkDefinitionCreationFlag.STRONGLY_TYPED (implied on TensorRT 11)
    fp16_flag: bool  # weak typing with BuilderFlag.FP16 and fp32 layer constraints (TensorRT 10 only)


def tensorrt_typing(precision: Precision, strongly_typed: bool, version: str) -> TensorRTTyping:
    """How TensorRT ``version`` builds a bundle of ``precision``."""
    check_supported(version)
    strong = strongly_typed or always_strongly_typed(version)
    if precision is Precision.FP16 and not strong:
        return TensorRTTyping(Precision.FP32, strongly_typed=False, fp16_flag=True)
    return TensorRTTyping(precision, strongly_typed=strong, fp16_flag=False)


def tensorrt_version() -> str:
    version = installed_version()
    if version is None:
        raise SRError("TensorRT is not installed here (pip install 'sr-export[tensorrt]' on a CUDA machine)")
    return version
