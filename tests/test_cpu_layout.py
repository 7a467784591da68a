"""The ONNX Runtime CPU engines' layout rewrite: a scalar Mul as BatchNormalization, the same numbers,
and (on CPUs where ONNX Runtime blocks channels) fewer layout reorders in the graph it runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from sr_export.builders.cpu_layout import write_cpu_graph
from sr_export.families.rrdbnet.graphs import RRDBNET
from sr_export.families.rrdbnet.model import RRDBConfig, RRDBNet
from sr_export.onnx_export import export_graph
from sr_runtime.families.rrdbnet.graphs import dims
from sr_runtime.precision import Precision

# Channel counts in multiples of 16, so that ONNX Runtime's blocked convolutions apply.
CONFIG = RRDBConfig(num_feat=32, num_block=2, num_grow_ch=16)
# Each RRDB scales three dense-block residuals and its own by a constant (x + 0.2 * f(x)).
SCALED_RESIDUALS_PER_BLOCK = 4
# Both graphs fp32 on ONNX Runtime: a product by the same fp32 constant, then summation order.
ATOL = 1e-5


@pytest.fixture(scope="module")
def graphs(tmp_path_factory) -> tuple[Path, Path, int]:
    folder = tmp_path_factory.mktemp("cpu-layout")
    torch.manual_seed(0)
    plain = export_graph(RRDBNET, RRDBNet(CONFIG).eval(), Precision.FP32, folder / "plain.onnx", dims(1, 32, 32))
    rewritten = folder / "rewritten.onnx"
    return plain, rewritten, write_cpu_graph(plain, rewritten)


def _run(path: Path, lr: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"lr": lr})[0]


def test_every_scaled_residual_becomes_a_batchnorm(graphs):
    plain, rewritten, count = graphs
    assert count == SCALED_RESIDUALS_PER_BLOCK * CONFIG.num_block

    def ops(path):
        return [n.op_type for n in onnx.load(str(path)).graph.node]

    assert ops(rewritten).count("BatchNormalization") == count
    assert ops(plain).count("Mul") - ops(rewritten).count("Mul") == count


def test_rewritten_graph_computes_the_same(graphs):
    plain, rewritten, _ = graphs
    lr = np.random.default_rng(0).random((2, 3, 21, 17), dtype=np.float32)
    np.testing.assert_allclose(_run(rewritten, lr), _run(plain, lr), rtol=0, atol=ATOL)


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
    # What remains: the image entering the first convolution and leaving the last one.
    assert _reorders(rewritten, tmp_path) <= 2 < before
