"""torch stage -> ONNX (fp32 or fp16), then cleanup, constant folding and shape inference.

fp16 graphs hold fp16 weights and I/O; normalisations run in fp32 (what autocast does for the
official noise predictor, and what keeps SD's GroupNorm/LayerNorm clear of fp16 overflow), and
the scalar σ / timestep inputs stay fp32 (``TensorIO.scalar``).
"""

from __future__ import annotations

import copy
import logging
import shutil
import warnings
from pathlib import Path

import onnx
import torch
import torch.nn.functional as F
from torch import nn

from sr_runtime.graph_io import Dims
from sr_runtime.precision import Precision

from .attention import Attention
from .graph_spec import GraphSpec

log = logging.getLogger(__name__)

OPSET = 17
TWO_GIB = 2**31


class Fp32GroupNorm(nn.GroupNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(), self.eps).to(x.dtype)


class Fp32LayerNorm(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


def upcast_norms(module: nn.Module) -> nn.Module:
    """Swaps every GroupNorm / LayerNorm for one that computes in fp32 (weights kept fp32)."""
    for norm in module.modules():
        if type(norm) is nn.GroupNorm:
            norm.__class__ = Fp32GroupNorm
        elif type(norm) is nn.LayerNorm:
            norm.__class__ = Fp32LayerNorm
        else:
            continue
        norm.float()
    return module


def module_for_precision(spec: GraphSpec, components, precision: Precision) -> nn.Module:
    module = spec.make_module(components).eval()
    if precision is Precision.FP32:
        return module.float()
    # A copy: the same VAE / UNet objects serve other graphs and the fp32 reference.
    return upcast_norms(copy.deepcopy(module).half())


def _initializer_bytes(model: onnx.ModelProto) -> int:
    return sum(t.ByteSize() for t in model.graph.initializer)


def _save(model: onnx.ModelProto, path: Path) -> None:
    """Saves with external data (one file beside it) above protobuf's 2 GiB limit."""
    external = _initializer_bytes(model) > TWO_GIB - 64 * 2**20
    data = path.with_name(path.name + ".data")
    if data.exists():
        data.unlink()
    onnx.save_model(
        model, str(path), save_as_external_data=external, all_tensors_to_one_file=True, location=data.name
    )


def optimize_onnx(src: Path, path: Path) -> None:
    """graph-surgeon cleanup + toposort, constant folding, ONNX shape inference: ``src`` -> ``path``."""
    import onnx_graphsurgeon as gs

    model = onnx.load(str(src), load_external_data=True)
    graph = gs.import_onnx(model)
    graph.cleanup().toposort()
    graph.fold_constants(error_ok=True).cleanup().toposort()
    model = gs.export_onnx(graph)
    _save(model, path)
    onnx.shape_inference.infer_shapes_path(str(path), str(path))


def export_graph(
    spec: GraphSpec, components, precision: Precision, path: Path, dims: Dims, opset: int = OPSET,
    attention: Attention = Attention.PLAIN,
) -> Path:
    """Exports one graph to ``path``, traced at the sample shapes ``dims`` (batch 1, the build's tile).

    ``attention``: MatMul / Softmax / MatMul, or ONNX Runtime's fused node (see attention.py).
    ``path`` should lie in a folder that the caller renames into place when complete: the
    external-data file name is recorded inside the model, so the file itself is never renamed.
    """
    module = module_for_precision(spec, components, precision)
    sample = spec.sample_inputs(dims, precision)
    # The exporter may scatter one external-data file per tensor: keep those in a scratch folder.
    raw = path.parent / f".raw-{spec.name}"
    raw.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad(), attention.exporting():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            sample,
            str(raw / path.name),
            input_names=[t.name for t in spec.inputs],
            output_names=[t.name for t in spec.outputs],
            dynamic_axes=spec.dynamic_axes(),
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    optimize_onnx(raw / path.name, path)
    shutil.rmtree(raw)
    log.info("exported %s (%s, %s attention) to %s", spec.name, precision.value, attention.value, path)
    return path


FP16_MAX = 65504.0


def fp16_overflow(path: Path, spec: GraphSpec, dims: Dims) -> str | None:
    """Runs an fp16 graph on its sample input with ONNX Runtime (CPU): why its output is unusable
    (non-finite values, or beyond fp16's range), or None when it is fine.

    Activations that outgrow fp16 become inf inside the engine; the output shows it, so checking the
    output on a plausible input catches weights that need fp32 (the "black images" some fp16 ESRGANs give).
    """
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {t.name: v.numpy() for t, v in zip(spec.inputs, spec.sample_inputs(dims, Precision.FP16), strict=True)}
    for name, value in zip((o.name for o in session.get_outputs()), session.run(None, feed), strict=True):
        value = np.asarray(value, dtype=np.float32)
        bad = int(np.count_nonzero(~np.isfinite(value)))
        if bad:
            return f"{spec.name}.{name} has {bad} non-finite values in fp16"
        peak = float(np.abs(value).max(initial=0.0))
        if peak > FP16_MAX:
            return f"{spec.name}.{name} reaches |x| = {peak:.6g}, beyond fp16's {FP16_MAX:g}"
    return None
