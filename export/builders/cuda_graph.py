"""The graph an ONNX Runtime CUDA bundle carries: the exported graph with its GroupNorms as ONNX Runtime's
fused CUDA kernel (``group_norm_fusion``)."""

from __future__ import annotations

from pathlib import Path

import onnx_graphsurgeon as gs

from .graph_file import load_graph, write_graph
from .graph_shapes import element_types
from .group_norm_fusion import affine_shaped, fuse_group_norms


def write_cuda_graph(src: Path, dst: Path) -> str:
    """``src`` rewritten for ONNX Runtime's CUDA EP, written to ``dst``; returns what was rewritten ("" for
    nothing), for the build log and the manifest."""
    model = load_graph(src, lambda tensor: affine_shaped(tensor.dims))
    graph = gs.import_onnx(model)
    fused = fuse_group_norms(graph, element_types(model))
    write_graph(graph, src, dst, fused > 0)
    return f"{fused} GroupNorm(s) fused (com.microsoft.GroupNorm, NHWC)" if fused else ""
