"""How a build exports attention: the plain MatMul / Softmax / MatMul graph, or ONNX Runtime's fused
node (``fused_attention``). Kept free of torch: the CLI reads it to describe backends."""

from __future__ import annotations

import contextlib
from enum import Enum


class Attention(str, Enum):
    PLAIN = "plain"
    FUSED = "fused"

    def exporting(self):
        """The context the ONNX export runs in."""
        if self is Attention.FUSED:
            from .fused_attention import fused_attention_export

            return fused_attention_export()
        return contextlib.nullcontext()
