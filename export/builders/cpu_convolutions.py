"""Convolutions rewritten to take fewer multiplications on ONNX Runtime's CPU, where a bundle's time goes
into them at the CPU's fp32 GEMM rate (a rate only less arithmetic beats).

- **Upsampling phases** (exact): a 3x3 convolution of a nearest x2 upsampling sees, for each of the four
  output phases, only a 2x2 neighbourhood of the source, so it is four 2x2 convolutions of the source
  (taps summed in float64) whose outputs interleave: 16 products per output pixel and channel instead of
  36, and the upsampled tensor is never made. The same numbers up to fp32 summation order.
- **Winograd F(4x4, 3x3)**: a 3x3 convolution as 6x6 input-tile transforms, 36 matrix products and 4x4
  output-tile transforms (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016): 4x
  fewer products (36 per 4x4 output tile instead of 144). Its transforms cost memory traffic, which the products saved pay for only where channels
  are wide; the rule below was measured with ONNX Runtime 1.32 on 2 threads of a 2-core AMD EPYC VM
  (AVX-512), one convolution against the direct one: 2.3x at 320 channels on 64², 1.7x at 512 on 64² and
  128², 1.2-1.6x at 256 on 64²-256², but 0.8-0.9x at 128 on 256²-512² and 0.5x at 64. Its transforms round
  differently from a direct convolution: about 1e-5 of the output's scale, against 1e-7 for summation order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from .graph_shapes import inferred_tensors

# Below these a convolution's transforms cost more than its products save (measured, see above).
WINOGRAD_MIN_CHANNELS = 256
WINOGRAD_MIN_PIXELS = 64 * 64

# F(4x4, 3x3) on the points 0, ±1, ±2 and infinity, as in Lavin & Gray.
_BT = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], np.float64)
_G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
               [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], np.float64)
_AT = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], np.float64)
_OUT, _TILE = _AT.shape  # a tile: 4 output pixels a side from 6 input pixels
_POINTS = _TILE * _TILE


@dataclass(frozen=True)
class ConvolutionRewrites:
    """How many convolutions of a graph each rewrite took."""

    upsampling_phases: int = 0
    winograd: int = 0

    def counts(self) -> list[tuple[int, str]]:
        return [(self.upsampling_phases, "upsampling convolution(s) as 4 phases"),
                (self.winograd, "convolution(s) as Winograd F(4x4, 3x3)")]


def _is_plain_3x3(node: gs.Node) -> bool:
    """A dense 3x3 convolution, stride 1, padding 1, with constant fp32 weights (and bias)."""
    if node.op != "Conv" or node.domain not in (None, "", "ai.onnx") or len(node.inputs) < 2:
        return False
    weight, attrs = node.inputs[1], node.attrs
    return (isinstance(weight, gs.Constant) and weight.dtype == np.float32
            and tuple(weight.shape[2:]) == (3, 3)
            and (len(node.inputs) < 3 or isinstance(node.inputs[2], gs.Constant))
            and attrs.get("group", 1) == 1 and attrs.get("auto_pad", "NOTSET") == "NOTSET"
            and list(attrs.get("strides", [1, 1])) == [1, 1] and list(attrs.get("dilations", [1, 1])) == [1, 1]
            and list(attrs.get("pads", [0, 0, 0, 0])) == [1, 1, 1, 1])


def _weight_and_bias(conv: gs.Node) -> tuple[np.ndarray, np.ndarray]:
    weight = conv.inputs[1].values.astype(np.float64)
    bias = conv.inputs[2].values if len(conv.inputs) > 2 else np.zeros(weight.shape[0], np.float32)
    return weight, bias


def _is_nearest_x2(node: gs.Node) -> bool:
    """Resize to twice the height and width, each output pixel the source pixel at floor(y / 2)."""
    if node.op != "Resize" or len(node.inputs) != 3 or not isinstance(node.inputs[2], gs.Constant):
        return False
    attrs = node.attrs
    return (attrs.get("mode") == "nearest" and attrs.get("coordinate_transformation_mode") == "asymmetric"
            and attrs.get("nearest_mode") == "floor"
            and node.inputs[2].values.tolist() == [1.0, 1.0, 2.0, 2.0])


def _fold_rows(weight: np.ndarray, phase: int) -> np.ndarray:
    """3 kernel rows over upsampled rows -> 2 rows over source rows: phase 0 (even output rows) reads
    source rows i-1, i, i; phase 1 reads i, i, i+1."""
    rows = ((0,), (1, 2)) if phase == 0 else ((0, 1), (2,))
    return np.stack([weight[..., list(r), :].sum(axis=-2) for r in rows], axis=-2)


def _upsampling_as_phases(graph: gs.Graph, conv: gs.Node) -> None:
    weight, bias = _weight_and_bias(conv)
    source, name = conv.inputs[0].inputs[0].inputs[0], conv.name or conv.outputs[0].name
    phases = []
    for row in (0, 1):
        for col in (0, 1):
            kernel = _fold_rows(_fold_rows(weight, row).swapaxes(-1, -2), col).swapaxes(-1, -2)
            phases += graph.layer(
                op="Conv", name=f"{name}.phase{row}{col}",
                inputs=[source, gs.Constant(f"{name}.phase{row}{col}.weight", kernel.astype(np.float32)),
                        gs.Constant(f"{name}.phase{row}{col}.bias", bias)],
                outputs=[f"{name}.phase{row}{col}"], attrs={"pads": [1 - row, 1 - col, row, col]})
    stacked = graph.layer(op="Concat", name=f"{name}.phases", inputs=phases, outputs=[f"{name}.phases"],
                          attrs={"axis": 1})
    # Channels ordered (phase row, phase column, channel): DepthToSpace's DCR order.
    output = conv.outputs[0]
    conv.outputs.clear()
    graph.layer(op="DepthToSpace", name=f"{name}.interleave", inputs=stacked, outputs=[output],
                attrs={"blocksize": 2, "mode": "DCR"})


def _upsampling_convolutions(graph: gs.Graph) -> list[gs.Node]:
    """Each plain 3x3 convolution whose input is a nearest x2 upsampling nothing else reads."""
    convs = []
    for resize in graph.nodes:
        if not _is_nearest_x2(resize):
            continue
        upsampled = resize.outputs[0]
        if upsampled in graph.outputs or len(upsampled.outputs) != 1:
            continue
        conv = upsampled.outputs[0]
        if _is_plain_3x3(conv) and conv.inputs[0] is upsampled:
            convs.append(conv)
    return convs


def _int64(name: str, values: list[int]) -> gs.Constant:
    return gs.Constant(name, np.array(values, np.int64))


def _winograd(graph: gs.Graph, conv: gs.Node) -> None:
    weight, bias = _weight_and_bias(conv)
    out_channels, in_channels = weight.shape[:2]
    name = conv.name or conv.outputs[0].name
    x = conv.inputs[0]

    def layer(op: str, inputs: list, attrs: dict | None = None) -> gs.Variable:
        step = f"{name}.winograd.{len(steps)}.{op}"
        steps.append(step)
        return graph.layer(op=op, name=step, inputs=inputs, outputs=[step], attrs=attrs or {})[0]

    steps: list[str] = []
    consts = {key: _int64(f"{name}.winograd.{key}", values) for key, values in {
        "zero": [0], "one": [1], "two": [2], "four": [4], "zeros": [0, 0], "spatial_axes": [2, 3],
        "planes": [-1, 1, 0, 0], "by_point": [-1, in_channels, _POINTS], "flat": [_POINTS, -1],
        "pixels": [_OUT * _OUT], "rest": [-1], "blocks": [-1, _OUT * _OUT * out_channels]}.items()}
    shape = layer("Shape", [x])
    # Each channel of each image through the 6x6 input transform: [N*C, 36, th, tw]. The padding is the
    # convolution's 1 pixel, and at the bottom and right enough for ceil(side / 4) whole tiles.
    planes = layer("Reshape", [x, consts["planes"]])
    basis = np.einsum("ai,bj->abij", _BT, _BT).reshape(_POINTS, 1, _TILE, _TILE)
    transformed = layer("Conv", [planes, gs.Constant(f"{name}.winograd.input_transform", basis.astype(np.float32))],
                        {"strides": [_OUT, _OUT], "pads": [1, 1, _OUT, _OUT]})
    tiles = layer("Slice", [layer("Shape", [transformed]), consts["two"], consts["four"]])
    tile_count = layer("ReduceProd", [tiles], {"keepdims": 1})
    by_point = layer("Reshape", [transformed, layer("Concat", [consts["by_point"], tile_count], {"axis": 0})])
    points_first = layer("Transpose", [by_point], {"perm": [2, 0, 1, 3]})  # [36, N, C, T]
    # The 36 products: [36, 1, K, C] @ [36, N, C, T] -> [36, N, K, T].
    kernels = np.einsum("ai,kcij,bj->abkc", _G, weight, _G).reshape(_POINTS, 1, out_channels, in_channels)
    products = layer("MatMul", [gs.Constant(f"{name}.winograd.kernels", kernels.astype(np.float32)), points_first])
    flat = layer("Reshape", [products, consts["flat"]])
    inverse = np.einsum("ia,jb->ijab", _AT, _AT).reshape(_OUT * _OUT, _POINTS)
    outputs = layer("MatMul", [gs.Constant(f"{name}.winograd.output_transform", inverse.astype(np.float32)), flat])
    # [16, N, K*T] -> [N, 16, K*T] -> [N, 16K, th, tw]: the channel order of DepthToSpace's DCR mode, which
    # interleaves the 4x4 output tiles into [N, K, 4th, 4tw], cropped to the input's sides.
    batch = layer("Slice", [shape, consts["zero"], consts["one"]])
    by_image = layer("Reshape", [outputs, layer("Concat", [consts["pixels"], batch, consts["rest"]], {"axis": 0})])
    image_major = layer("Transpose", [by_image], {"perm": [1, 0, 2]})
    blocks = layer("Reshape", [image_major, layer("Concat", [consts["blocks"], tiles], {"axis": 0})])
    image = layer("DepthToSpace", [blocks], {"blocksize": _OUT, "mode": "DCR"})
    sides = layer("Slice", [shape, consts["two"], consts["four"]])
    cropped = layer("Slice", [image, consts["zeros"], sides, consts["spatial_axes"]])
    output = conv.outputs[0]
    conv.outputs.clear()
    graph.layer(op="Add", name=f"{name}.winograd.bias", outputs=[output],
                inputs=[cropped, gs.Constant(f"{name}.winograd.bias", bias.reshape(-1, 1, 1))])


def _winograd_convolutions(graph: gs.Graph, input_sides: dict[str, tuple[int, int]]) -> list[gs.Node]:
    """The plain 3x3 convolutions wide and large enough for Winograd to pay; ``input_sides``: a tensor's
    (height, width) at the sizes the bundle is built for."""
    chosen = []
    for conv in graph.nodes:
        if not _is_plain_3x3(conv):
            continue
        out_channels, in_channels = conv.inputs[1].shape[:2]
        sides = input_sides.get(conv.inputs[0].name)
        if (sides is not None and min(out_channels, in_channels) >= WINOGRAD_MIN_CHANNELS
                and sides[0] * sides[1] >= WINOGRAD_MIN_PIXELS):
            chosen.append(conv)
    return chosen


def weights_read(graph: gs.Graph, input_sides: dict[str, tuple[int, int]] | None) -> set[str]:
    """The constants ``rewrite_convolutions`` would read (``input_sides`` None: no Winograd)."""
    convs = _upsampling_convolutions(graph)
    if input_sides is not None:
        convs += _winograd_convolutions(graph, input_sides)
    return {tensor.name for conv in convs for tensor in conv.inputs[1:]}


def rewrite_convolutions(graph: gs.Graph, input_sides: dict[str, tuple[int, int]] | None) -> ConvolutionRewrites:
    """Both rewrites, in place (``input_sides`` None: upsampling phases only)."""
    upsampling = _upsampling_convolutions(graph)
    for conv in upsampling:
        _upsampling_as_phases(graph, conv)
    graph.cleanup()
    chosen = _winograd_convolutions(graph, input_sides) if input_sides is not None else []
    for conv in chosen:
        _winograd(graph, conv)
    graph.cleanup().toposort()
    return ConvolutionRewrites(len(upsampling), len(chosen))


def spatial_sides(model: onnx.ModelProto, input_shapes: dict[str, list[int]]) -> dict[str, tuple[int, int]]:
    """Each 4-D tensor's (height, width) when the graph's inputs have ``input_shapes``."""
    sides = {}
    for info in inferred_tensors(model, input_shapes):
        dims = info.type.tensor_type.shape.dim
        if len(dims) == 4 and all(d.HasField("dim_value") for d in dims[2:]):
            sides[info.name] = (dims[2].dim_value, dims[3].dim_value)
    return sides
