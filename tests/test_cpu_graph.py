"""The ONNX Runtime CPU bundle's graph rewrites: a scalar Mul as BatchNormalization (the blocked layout),
upsampling convolutions as phases and wide convolutions as Winograd F(4x4, 3x3); each computes what the
exported graph computes, within the tolerance its arithmetic allows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from sr_export.builders import cpu_convolutions
from sr_export.builders.cpu_graph import write_cpu_graph
from sr_export.families.rrdbnet.graphs import RRDBNET
from sr_export.families.rrdbnet.model import RRDBConfig, RRDBNet
from sr_export.onnx_export import export_graph
from sr_runtime.families.rrdbnet.graphs import dims
from sr_runtime.precision import Precision

# Channel counts in multiples of 16, so that ONNX Runtime's blocked convolutions apply.
CONFIG = RRDBConfig(num_feat=32, num_block=2, num_grow_ch=16)
# Each RRDB scales three dense-block residuals and its own by a constant (x + 0.2 * f(x)).
SCALED_RESIDUALS_PER_BLOCK = 4
UPSAMPLINGS = 2  # x4: two nearest x2 upsamplings, each followed by a 3x3 convolution
# Both graphs fp32 on ONNX Runtime: a product by the same fp32 constant, taps summed in another order.
ATOL = 1e-5
# Winograd's transforms multiply by up to 8 and divide by 24 before the products: about 1e-5 of the
# output's scale per convolution (a direct fp32 convolution: about 1e-7).
WINOGRAD_RTOL = 2e-5


@pytest.fixture(scope="module")
def graphs(tmp_path_factory) -> tuple[Path, Path, object]:
    folder = tmp_path_factory.mktemp("cpu-graph")
    torch.manual_seed(0)
    plain = export_graph(RRDBNET, RRDBNet(CONFIG).eval(), Precision.FP32, folder / "plain.onnx", dims(1, 32, 32))
    rewritten = folder / "rewritten.onnx"
    return plain, rewritten, write_cpu_graph(plain, rewritten, {"lr": [1, 3, 32, 32]}, winograd=True)


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _ops(path: Path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def test_every_scaled_residual_becomes_a_batchnorm(graphs):
    plain, rewritten, rewrites = graphs
    assert rewrites.scalar_muls == SCALED_RESIDUALS_PER_BLOCK * CONFIG.num_block
    assert _ops(rewritten).count("BatchNormalization") == rewrites.scalar_muls
    assert _ops(plain).count("Mul") - _ops(rewritten).count("Mul") == rewrites.scalar_muls


def test_every_upsampling_convolution_becomes_four_phases(graphs):
    plain, rewritten, rewrites = graphs
    assert rewrites.convolutions.upsampling_phases == UPSAMPLINGS
    assert rewrites.convolutions.winograd == 0  # 32 channels: Winograd's transforms would cost more
    assert _ops(plain).count("Resize") == UPSAMPLINGS and "Resize" not in _ops(rewritten)
    assert _ops(rewritten).count("DepthToSpace") == UPSAMPLINGS
    assert _ops(rewritten).count("Conv") == _ops(plain).count("Conv") + 3 * UPSAMPLINGS
    assert str(rewrites) == (f"{rewrites.scalar_muls} scalar Mul(s) as BatchNormalization, "
                             f"{UPSAMPLINGS} upsampling convolution(s) as 4 phases")


def test_rewritten_graph_computes_the_same(graphs):
    plain, rewritten, _ = graphs
    lr = np.random.default_rng(0).random((2, 3, 21, 17), dtype=np.float32)
    np.testing.assert_allclose(_session(rewritten).run(None, {"lr": lr})[0], _session(plain).run(None, {"lr": lr})[0],
                               rtol=0, atol=ATOL)


def _reorders(path: Path, folder: Path) -> int:
    """Layout reorders in the graph ONNX Runtime actually runs (all its optimisations applied)."""
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(folder / f"{path.stem}.optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return sum(n.op_type in ("ReorderInput", "ReorderOutput")
               for n in onnx.load(options.optimized_model_filepath).graph.node)


def test_rewritten_graph_stays_in_the_blocked_layout(graphs, tmp_path):
    plain, rewritten, _ = graphs
    before = _reorders(plain, tmp_path)
    if before == 0:
        pytest.skip("ONNX Runtime runs no blocked (NCHWc) convolution layout on this CPU")
    # What remains: the image entering the first convolution and leaving the last one, and each
    # upsampling's phases leaving the layout to be interleaved and entering it again.
    assert _reorders(rewritten, tmp_path) <= 2 + 2 * UPSAMPLINGS < before + 2 * UPSAMPLINGS


def _conv_graph(folder: Path, in_channels: int, out_channels: int, external: bool = False) -> Path:
    """x -> 3x3 convolution "wide" (``in_channels`` -> ``out_channels``) -> 3x3 convolution "narrow" to 8
    channels; the weights in an external-data file if ``external``."""
    rng = np.random.default_rng(in_channels)
    weights = [(rng.standard_normal((k, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
               for c, k in ((in_channels, out_channels), (out_channels, 8))]
    initializers = [numpy_helper.from_array(w, f"w{i}") for i, w in enumerate(weights)]
    initializers += [numpy_helper.from_array(rng.standard_normal(w.shape[0]).astype(np.float32), f"b{i}")
                     for i, w in enumerate(weights)]
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["h"], pads=[1, 1, 1, 1], name="wide"),
             helper.make_node("Conv", ["h", "w1", "b1"], ["y"], pads=[1, 1, 1, 1], name="narrow")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", in_channels, "h", "w"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8, "h", "w"])
    model = helper.make_model(helper.make_graph(nodes, "convs", [x], [y], initializers),
                              opset_imports=[helper.make_opsetid("", 17)])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "convs.onnx"
    onnx.save_model(model, str(path), save_as_external_data=external, location="convs.onnx.data", size_threshold=0)
    return path


def _rewrite(src: Path, side: int, winograd: bool = True):
    """``src`` rewritten for a side x side input into ``rewritten/`` beside it, with its data file copied
    there as the bundle builder copies it."""
    dst = src.parent / "rewritten" / src.name
    dst.parent.mkdir()
    channels = onnx.load(str(src), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[1].dim_value
    rewrites = write_cpu_graph(src, dst, {"x": [1, channels, side, side]}, winograd)
    data = src.with_name(src.name + ".data")
    if data.exists():
        dst.with_name(data.name).write_bytes(data.read_bytes())
    return dst, rewrites


WIDE = cpu_convolutions.WINOGRAD_MIN_CHANNELS
LARGE = int(np.ceil(np.sqrt(cpu_convolutions.WINOGRAD_MIN_PIXELS)))  # the smallest side that takes Winograd


@pytest.mark.parametrize("external", [False, True])
def test_winograd_takes_wide_convolutions_and_computes_the_same(tmp_path, external):
    src = _conv_graph(tmp_path, WIDE, WIDE, external)
    rewritten, rewrites = _rewrite(src, LARGE)
    assert rewrites.convolutions.winograd == 1  # the wide one; the one to 8 channels stays direct
    model = onnx.load(str(rewritten), load_external_data=False)
    assert [n.name for n in model.graph.node if n.name in ("wide", "narrow")] == ["narrow"]
    if external:  # the weights no rewrite read stay in the data file, unread at build time
        kept = {t.name: t for t in model.graph.initializer}
        assert kept["w1"].data_location == TensorProto.EXTERNAL and "w0" not in kept
    # Sides that are not whole 4x4 tiles, and a batch of two.
    x = np.random.default_rng(1).standard_normal((2, WIDE, 13, 22)).astype(np.float32)
    expected = _session(src).run(None, {"x": x})[0]
    got = _session(rewritten).run(None, {"x": x})[0]
    assert got.shape == expected.shape == (2, 8, 13, 22)
    np.testing.assert_allclose(got, expected, rtol=0, atol=WINOGRAD_RTOL * np.abs(expected).max())


@pytest.mark.parametrize("channels, side, winograd", [
    (WIDE // 2, LARGE, True),  # narrow: the transforms' memory traffic outweighs the products saved
    (WIDE, LARGE // 2, True),  # a small image: likewise
    (WIDE, LARGE, False),  # --no-winograd
])
def test_winograd_is_left_out_where_it_would_not_pay_or_is_not_wanted(tmp_path, channels, side, winograd):
    src = _conv_graph(tmp_path, channels, WIDE)
    rewritten, rewrites = _rewrite(src, side, winograd)
    assert not rewrites and str(rewrites) == ""  # nothing else to rewrite either: copied as it is
    assert rewritten.read_bytes() == src.read_bytes()
