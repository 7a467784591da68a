"""Shapes and element types of an exported graph's tensors, by ONNX Runtime's shape inference: it knows
its own contrib ops (the fused attention), where ONNX's stops and leaves everything after them untyped."""

from __future__ import annotations

import numpy as np
import onnx
from onnx.external_data_helper import uses_external_data


def inferred_tensors(model: onnx.ModelProto, input_shapes: dict[str, list[int]] | None = None
                     ) -> list[onnx.ValueInfoProto]:
    """Every tensor's inferred type and shape, with the graph's inputs fixed to ``input_shapes`` where given.
    Constants whose data were not loaded become inputs of their shape: the inference reads no weights."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    static = onnx.ModelProto()
    static.CopyFrom(model)
    for graph_input in static.graph.input:
        if graph_input.name in (input_shapes or {}):
            dims = graph_input.type.tensor_type.shape.dim
            for dim, size in zip(dims, input_shapes[graph_input.name], strict=True):
                dim.Clear()
                dim.dim_value = size
    unloaded = [t for t in static.graph.initializer if uses_external_data(t)]
    for tensor in unloaded:
        static.graph.initializer.remove(tensor)
    static.graph.input.extend(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in unloaded)
    del static.graph.value_info[:]
    inferred = SymbolicShapeInference.infer_shapes(static, auto_merge=True)
    return [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]


def element_types(model: onnx.ModelProto) -> dict[str, np.dtype]:
    """Tensor name -> its numpy element type, where inference resolved it."""
    return {info.name: onnx.helper.tensor_dtype_to_np_dtype(info.type.tensor_type.elem_type)
            for info in inferred_tensors(model) if info.type.tensor_type.elem_type}
