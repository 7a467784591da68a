"""ONNX Runtime CUDA bundles: GroupNorm islands fused into com.microsoft.GroupNorm (group_norm_fusion).

The fused op has only a CUDA kernel, so here the rewritten graphs run in ONNX's reference evaluator with
the op as its contract states it (ONNX Runtime's ContribOperators.md: channels-last input, statistics per
(sample, group), then gamma / beta, then SiLU when ``activation`` is 1). That checks what the rewrite
wires (transposes, groups, epsilon, affine, activation, which nodes it replaces); the CUDA kernel's own
numbers are checked against PyTorch on a GPU (test_build.py, test_a_cuda_bundle_matches_the_reference_on_the_gpu).
"""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import onnx
import pytest
import torch
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun
from torch import nn

from sr_export.attention import Attention
from sr_export.builders.cuda_graph import write_cuda_graph
from sr_export.builders.onnx_cache import export_graphs
from sr_export.families.invsr.schedule import DEFAULT_TIMESTEPS
from sr_export.families.invsr.source import resolve_source
from sr_export.onnx_export import OPSET, optimize_onnx, upcast_norms
from sr_runtime.precision import Precision

TILE = 32
# Reference evaluator, exported graph vs fused graph, max |diff| over the output's scale (at least 1). fp32:
# summation order; fp16: the fused op applies SiLU before rounding to fp16, the island after (a few ulps).
TOLERANCE = {Precision.FP32: 1e-5, Precision.FP16: 5e-3}


class GroupNorm(OpRun):  # the evaluator takes the op's name from the class
    op_domain = "com.microsoft"

    def _run(self, x, gamma, beta, activation=0, channels_last=1, epsilon=1e-5, groups=None):
        assert channels_last == 1
        n, h, w, c = x.shape
        grouped = x.astype(np.float32).reshape(n, h * w, groups, c // groups)
        mean = grouped.mean(axis=(1, 3), keepdims=True)
        var = grouped.var(axis=(1, 3), keepdims=True)
        y = ((grouped - mean) / np.sqrt(var + epsilon)).reshape(n, h, w, c) * gamma + beta
        if activation == 1:
            y = y / (1 + np.exp(-y))
        return (y.astype(x.dtype),)


def _ops(path) -> Counter:
    return Counter(node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node)


def _fusible_islands(path) -> int:
    """InstanceNormalizations whose affine weight is (C, 1, 1): GroupNorms of 4-D tensors."""
    model = onnx.load(str(path))
    weights = {t.name: t for t in model.graph.initializer}
    consumers = {name: node for node in model.graph.node for name in node.input}
    count = 0
    for node in model.graph.node:
        if node.op_type == "InstanceNormalization":
            mul = consumers[consumers[node.output[0]].output[0]]
            count += any(len(weights[name].dims) == 3 for name in mul.input if name in weights)
    return count


def _max_diff(plain, fused, feeds: dict) -> tuple[float, float]:
    expected = ReferenceEvaluator(str(plain)).run(None, feeds)[0].astype(np.float64)
    got = ReferenceEvaluator(str(fused), new_ops=[GroupNorm]).run(None, feeds)[0]
    return float(np.abs(expected - got).max()), max(1.0, float(np.abs(expected).max()))


@pytest.fixture(scope="module")
def invsr(tiny_checkpoints):
    sd, pth, yaml = tiny_checkpoints
    source = resolve_source(sd, pth, yaml, (DEFAULT_TIMESTEPS[1],), report=lambda message: None)
    return source, source.plan_build(TILE, 1, lambda message: None)


@pytest.mark.parametrize("precision", [Precision.FP32, Precision.FP16])
@pytest.mark.slow
def test_every_invsr_group_norm_is_fused_and_computes_the_same(invsr, tmp_path, precision):
    source, plan = invsr
    # Plain attention: the reference evaluator does not run ONNX Runtime's fused attention node.
    folder = export_graphs(source, plan, precision, TILE, OPSET, Attention.PLAIN, lambda message: None)
    for spec in plan.graphs:
        plain, fused = folder / f"{spec.name}.onnx", tmp_path / f"{spec.name}.onnx"
        rewrites = write_cuda_graph(plain, fused)
        islands = _fusible_islands(plain)
        assert islands > 0 and rewrites.startswith(f"{islands} GroupNorm(s) fused"), (spec.name, rewrites)
        before, after = _ops(plain), _ops(fused)
        assert after["GroupNorm"] == islands
        assert after["InstanceNormalization"] == before["InstanceNormalization"] - islands  # 3-D ones stay
        feeds = {t.name: v.numpy() for t, v in zip(spec.inputs, spec.sample_inputs(plan.dims(1), precision), strict=True)}
        diff, scale = _max_diff(plain, fused, feeds)
        assert diff <= TOLERANCE[precision] * scale, (spec.name, diff, scale)


class Islands(nn.Module):
    """GroupNorm + SiLU; a GroupNorm whose output also feeds a residual (no SiLU to fuse); one with 3 channels
    per group, which the CUDA kernel cannot take (it reads channel pairs)."""

    def __init__(self):
        super().__init__()
        self.conv_in = nn.Conv2d(3, 16, 3, padding=1)
        self.norm_silu = nn.GroupNorm(4, 16, eps=1e-6)
        self.norm_residual = nn.GroupNorm(8, 16)
        self.conv_odd = nn.Conv2d(16, 12, 1)
        self.norm_odd = nn.GroupNorm(4, 12)

    def forward(self, x):
        h = self.conv_in(x)
        h = nn.functional.silu(self.norm_silu(h))
        h = h + self.norm_residual(h) * 0.5
        return self.norm_odd(self.conv_odd(h))


@pytest.mark.parametrize("precision", [Precision.FP32, Precision.FP16])
def test_only_what_the_kernel_takes_is_fused(tmp_path, precision):
    torch.manual_seed(0)
    module = Islands().eval()
    for norm in (module.norm_silu, module.norm_residual, module.norm_odd):
        nn.init.normal_(norm.weight)
        nn.init.normal_(norm.bias)
    if precision is Precision.FP16:
        module = upcast_norms(module.half())  # as the fp16 export runs them: fp32 islands
    x = torch.randn(1, 3, 12, 10, dtype=torch.float16 if precision is Precision.FP16 else torch.float32)
    raw, plain, fused = tmp_path / "raw.onnx", tmp_path / "plain.onnx", tmp_path / "fused.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), str(raw), input_names=["x"], output_names=["y"], opset_version=OPSET,
                          dynamic_axes={"x": {0: "batch", 2: "h", 3: "w"}}, dynamo=False)
    optimize_onnx(raw, plain)
    assert write_cuda_graph(plain, fused).startswith("2 GroupNorm(s) fused")
    nodes = onnx.load(str(fused)).graph.node
    activations = sorted(next(a.i for a in n.attribute if a.name == "activation") for n in nodes if n.op_type == "GroupNorm")
    assert activations == [0, 1]  # SiLU fused into the first; the residual's norm has no SiLU of its own
    assert _ops(fused)["InstanceNormalization"] == 1  # 3 channels per group: the island stays
    diff, scale = _max_diff(plain, fused, {"x": x.numpy()})
    assert diff <= TOLERANCE[precision] * scale


def test_a_graph_without_group_norm_is_copied_unchanged(tmp_path):
    raw, plain, copied = tmp_path / "raw.onnx", tmp_path / "plain.onnx", tmp_path / "copied.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(nn.Conv2d(3, 4, 3), (torch.randn(1, 3, 8, 8),), str(raw), opset_version=OPSET, dynamo=False)
    optimize_onnx(raw, plain)
    assert write_cuda_graph(plain, copied) == ""
    assert copied.read_bytes() == plain.read_bytes()
