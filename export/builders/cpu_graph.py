"""The graph an ONNX Runtime CPU bundle carries: the exported graph with the CPU rewrites, the blocked
layout's (``cpu_layout``) and the cheaper convolutions' (``cpu_convolutions``).

Only the weights a rewrite reads are loaded: the rewritten graph keeps pointing at its external-data
file (a UNet's 3.4 GB), which the builder copies beside it unchanged."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import onnx
import onnx_graphsurgeon as gs
from onnx.external_data_helper import load_external_data_for_tensor, uses_external_data

from ..bundle import copy_file
from .cpu_convolutions import ConvolutionRewrites, rewrite_convolutions, spatial_sides, weights_read
from .cpu_layout import scalar_mul_as_batchnorm

# Constants up to this size are read with the graph: shape inference needs the shape-like ones.
SMALL_CONSTANT_BYTES = 4096


@dataclass(frozen=True)
class CpuGraphRewrites:
    scalar_muls: int
    convolutions: ConvolutionRewrites

    def __bool__(self) -> bool:
        return any(count for count, _ in self._counts())

    def __str__(self) -> str:
        """What was rewritten ("" for nothing), for the build log and the manifest."""
        return ", ".join(f"{count} {what}" for count, what in self._counts() if count)

    def _counts(self) -> list[tuple[int, str]]:
        return [(self.scalar_muls, "scalar Mul(s) as BatchNormalization"), *self.convolutions.counts()]


def _load_external(model: onnx.ModelProto, folder: Path, wanted) -> None:
    for tensor in model.graph.initializer:
        if uses_external_data(tensor) and wanted(tensor):
            load_external_data_for_tensor(tensor, str(folder))
            tensor.data_location = onnx.TensorProto.DEFAULT
            del tensor.external_data[:]


def _size(tensor: onnx.TensorProto) -> int:
    """Its bytes, from its shape and type (an external entry need not record its length)."""
    return math.prod(tensor.dims) * onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize


def write_cpu_graph(src: Path, dst: Path, input_shapes: dict[str, list[int]], winograd: bool) -> CpuGraphRewrites:
    """``src`` rewritten for ONNX Runtime's CPU, written to ``dst``; ``input_shapes``: the sizes the bundle
    is built for, which decide where Winograd pays. A graph with nothing to rewrite is copied as it is (a
    reflink where the file system clones) rather than serialised again."""
    model = onnx.load(str(src), load_external_data=False)
    _load_external(model, src.parent, lambda tensor: _size(tensor) <= SMALL_CONSTANT_BYTES)
    scalar_muls = scalar_mul_as_batchnorm(model)
    sides = spatial_sides(model, input_shapes) if winograd else None
    read = weights_read(gs.import_onnx(model), sides)
    _load_external(model, src.parent, lambda tensor: tensor.name in read)
    graph = gs.import_onnx(model)
    rewrites = CpuGraphRewrites(scalar_muls, rewrite_convolutions(graph, sides))
    if rewrites:
        onnx.save_model(gs.export_onnx(graph), str(dst))
    else:
        copy_file(src, dst)
    return rewrites
