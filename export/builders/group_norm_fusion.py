"""GroupNorm (+ SiLU) as ONNX Runtime's fused CUDA kernel, ``com.microsoft.GroupNorm``.

The export writes each GroupNorm as an fp32 island: Cast to fp32, Reshape to (N, groups, -1),
InstanceNormalization, Reshape back, the affine Mul and Add, Cast back to fp16, usually followed by
SiLU (Sigmoid and Mul). On the CUDA EP that is nine kernels, each reading and writing the whole
activation. ONNX Runtime's contrib op does it in two passes (group sums, then normalise, affine and
SiLU), accumulating in fp32 with fp16 in and out: the same precision as the island, SiLU before the
cast rather than after. The kernel takes channels-last input, so the fused node sits between two
Transposes: the full-size InvSR-1 bundle still ran 1.33x faster end to end on an H200 (CUDA graphs on
both). It adds its group sums with atomics, so two runs of a bundle are not bit-identical.

Its CUDA kernel handles an even number of channels per group up to 512 (it reads channel pairs), and
gamma / beta in fp32; other GroupNorms keep the island.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs
from onnx import TensorProto

MS_DOMAIN = "com.microsoft"
MAX_CHANNELS_PER_GROUP = 512
TO_NHWC, TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]


def _only_consumer(tensor: gs.Variable, op: str) -> gs.Node | None:
    if len(tensor.outputs) == 1 and tensor.outputs[0].op == op:
        return tensor.outputs[0]
    return None


def _producer(tensor: gs.Tensor, op: str) -> gs.Node | None:
    if isinstance(tensor, gs.Variable) and len(tensor.inputs) == 1 and tensor.inputs[0].op == op:
        return tensor.inputs[0]
    return None


def affine_shaped(dims) -> bool:
    """(C, 1, 1): an island's affine weight or bias, the only weights the fusion reads."""
    return len(dims) == 3 and tuple(dims[1:]) == (1, 1)


def _per_channel(node: gs.Node, data: gs.Tensor) -> np.ndarray | None:
    """The fp32 (C, 1, 1) constant ``node`` (a Mul or Add) applies to ``data``, flattened to (C,)."""
    other = [t for t in node.inputs if t is not data]
    if len(node.inputs) != 2 or len(other) != 1 or not isinstance(other[0], gs.Constant):
        return None
    values = other[0].values
    if values.dtype != np.float32 or not affine_shaped(values.shape):
        return None
    return values.reshape(-1)


def _silu_after(tensor: gs.Variable) -> gs.Node | None:
    """The Mul of SiLU(tensor) = tensor * Sigmoid(tensor), when that is all ``tensor`` feeds."""
    consumers = tensor.outputs
    if len(consumers) != 2:
        return None
    sigmoid = next((n for n in consumers if n.op == "Sigmoid"), None)
    mul = next((n for n in consumers if n.op == "Mul"), None)
    if sigmoid is None or mul is None or len(mul.inputs) != 2:
        return None
    if {id(t) for t in mul.inputs} != {id(tensor), id(sigmoid.outputs[0])} or len(sigmoid.outputs[0].outputs) != 1:
        return None
    return mul


def _fuse(graph: gs.Graph, norm: gs.Node, types: dict[str, np.dtype]) -> bool:
    """Replaces the GroupNorm island around InstanceNormalization ``norm``; False where it does not match."""
    scale, bias = norm.inputs[1], norm.inputs[2]
    if not (isinstance(scale, gs.Constant) and isinstance(bias, gs.Constant) and scale.values.ndim == 1
            and np.all(scale.values == 1) and np.all(bias.values == 0)):
        return False
    groups = scale.values.shape[0]
    to_groups = _producer(norm.inputs[0], "Reshape")
    back = _only_consumer(norm.outputs[0], "Reshape")
    if to_groups is None or back is None:
        return False
    shape = to_groups.inputs[1]
    if not isinstance(shape, gs.Constant) or shape.values.tolist()[1:] != [groups, -1]:
        return False
    island_input = to_groups.inputs[0]
    restored_shape = _producer(back.inputs[1], "Shape")
    if restored_shape is None or restored_shape.inputs[0] is not island_input:
        return False
    affine_mul = _only_consumer(back.outputs[0], "Mul")
    affine_add = affine_mul and _only_consumer(affine_mul.outputs[0], "Add")
    if affine_add is None:
        return False
    gamma, beta = _per_channel(affine_mul, back.outputs[0]), _per_channel(affine_add, affine_mul.outputs[0])
    if gamma is None or beta is None or gamma.shape != beta.shape:
        return False
    channels = gamma.shape[0]
    per_group, rest = divmod(channels, groups)
    if rest or per_group % 2 or per_group > MAX_CHANNELS_PER_GROUP:
        return False
    # fp16 island: Cast(fp16 -> fp32) in, Cast(-> fp16) out, both dropped; an fp32 graph has neither.
    opening = _producer(island_input, "Cast")
    if opening is not None and opening.attrs.get("to") == TensorProto.FLOAT and types.get(opening.inputs[0].name) == np.float16:
        closing = _only_consumer(affine_add.outputs[0], "Cast")
        if closing is None or closing.attrs.get("to") != TensorProto.FLOAT16:
            return False
        data, end = opening.inputs[0], closing.outputs[0]
    elif types.get(island_input.name) == np.float32:
        data, end = island_input, affine_add.outputs[0]
    else:
        return False
    silu = _silu_after(end)
    if silu is not None:
        end = silu.outputs[0]

    name = norm.name or norm.outputs[0].name  # unique, also where a norm module applied twice shares a scope
    dtype = types[data.name]
    nhwc = gs.Variable(f"{name}/GroupNorm_nhwc_input", dtype=dtype)
    normed = gs.Variable(f"{name}/GroupNorm_nhwc_output", dtype=dtype)
    end.inputs.clear()  # detached from the island's last node; cleanup() drops the island
    graph.nodes += [
        gs.Node("Transpose", f"{name}/GroupNorm_to_nhwc", {"perm": TO_NHWC}, [data], [nhwc]),
        gs.Node("GroupNorm", f"{name}/GroupNorm", {
            "activation": int(silu is not None), "channels_last": 1, "epsilon": float(norm.attrs.get("epsilon", 1e-5)),
            "groups": int(groups)},
            [nhwc, gs.Constant(f"{name}/GroupNorm.gamma", gamma), gs.Constant(f"{name}/GroupNorm.beta", beta)],
            [normed], domain=MS_DOMAIN),
        gs.Node("Transpose", f"{name}/GroupNorm_to_nchw", {"perm": TO_NCHW}, [normed], [end]),
    ]
    return True


def fuse_group_norms(graph: gs.Graph, types: dict[str, np.dtype]) -> int:
    """Fuses, in place, every GroupNorm island the CUDA kernel can take; returns how many. ``types``: the
    tensors' element types (``graph_shapes.element_types``); the affine constants' values must be loaded."""
    norms = [n for n in graph.nodes if n.op == "InstanceNormalization"]
    fused = sum(_fuse(graph, norm, types) for norm in norms)
    if fused:
        graph.cleanup().toposort()
    return fused
