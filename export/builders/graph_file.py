"""An exported graph read for a rewrite with only the weights the rewrite reads (a UNet's 3.4 GB data file
stays on disk: the rewritten graph keeps pointing at it, and the builder copies it beside it unchanged),
and the rewritten graph written back."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import onnx
import onnx_graphsurgeon as gs
from onnx.external_data_helper import load_external_data_for_tensor, uses_external_data

from ..atomic_folders import copy_file

# Constants up to this size are read with the graph: shape inference needs the shape-like ones.
SMALL_CONSTANT_BYTES = 4096


def tensor_bytes(tensor: onnx.TensorProto) -> int:
    """Its bytes, from its shape and type (an external entry need not record its length)."""
    return math.prod(tensor.dims) * onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize


def load_weights(model: onnx.ModelProto, folder: Path, wanted: Callable[[onnx.TensorProto], bool]) -> None:
    """Reads into ``model`` the external constants ``wanted`` picks (``folder``: where their file is)."""
    for tensor in model.graph.initializer:
        if uses_external_data(tensor) and wanted(tensor):
            load_external_data_for_tensor(tensor, str(folder))
            tensor.data_location = onnx.TensorProto.DEFAULT
            del tensor.external_data[:]


def load_graph(src: Path, wanted: Callable[[onnx.TensorProto], bool] = lambda tensor: False) -> onnx.ModelProto:
    """``src`` with its small constants and those ``wanted`` picks read; the other weights stay on disk."""
    model = onnx.load(str(src), load_external_data=False)
    load_weights(model, src.parent, lambda tensor: tensor_bytes(tensor) <= SMALL_CONSTANT_BYTES or wanted(tensor))
    return model


def write_graph(graph: gs.Graph, src: Path, dst: Path, rewritten: bool) -> None:
    """``graph`` (read from ``src``) to ``dst``; where nothing was rewritten, ``src`` is copied as it is (a
    reflink where the file system clones) rather than serialised again."""
    if rewritten:
        onnx.save_model(gs.export_onnx(graph), str(dst))
    else:
        copy_file(src, dst)
