"""Every exported network also runs in PyTorch on a device other than the CPU (the bench's eager and
torch.compile rows on a GPU, ``upscale --backend torch --device cuda``). Checked here without a GPU on
PyTorch's meta device: a tensor a forward makes on the CPU (an ``arange`` without ``device=``) meets
meta tensors there and fails, as it meets CUDA tensors on a GPU. ResShift's shifted-window mask did
that on a GPU while every CPU test passed."""

from __future__ import annotations

import copy

import click
import pytest
import torch

from sr_export.builders.backends import BACKENDS
from sr_export.families import FAMILIES
from sr_runtime.precision import Precision


@pytest.mark.parametrize("family", list(FAMILIES.values()), ids=list(FAMILIES))
@pytest.mark.slow
def test_every_graph_module_computes_on_its_inputs_device(family):
    options = click.Command("build", params=list(family.build_options)).make_context("build", []).params
    source = family.source(family.models[0], options, lambda message: None)
    # The default tile: every family's tiling rules hold there (OSEDiff takes no LR under 128 px).
    plan = source.plan_build(family.default_tile(BACKENDS["onnxruntime-cpu"]), 1, lambda message: None)
    for spec in plan.graphs:
        module = copy.deepcopy(spec.make_module(source.components)).to("meta")
        inputs = [x.to("meta") for x in spec.sample_inputs(plan.dims(1), Precision.FP32)]
        with torch.inference_mode():
            outputs = module(*inputs)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        assert all(out.device.type == "meta" for out in outputs), spec.name
