"""TensorRT: engine builds, the runtime backend, the compatibility refusal and ``sr-export compare``.

Everything that needs no TensorRT libraries runs everywhere: shape profiles, which ONNX each
backend / precision / TensorRT version exports, the fp32 islands of a weakly typed fp16 build (on the
real ONNX graphs), inspector JSON parsing and the fp16-came-out-fp32 failure, the refusal wiring,
the CLI's one-line failure, and the comparison (on two ONNX Runtime bundles). Tests marked
``tensorrt`` build and run real engines; conftest skips them, with the reason, where TensorRT or a
GPU is missing.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from helpers import edit_manifest
from onnx import TensorProto

from sr_export.builders import backends
from sr_export.builders.backends import BACKENDS, select_backend
from sr_export.builders.bundle_builder import BuildOptions, build_bundle
from sr_export.builders.engine_builder import EngineSettings
from sr_export.builders.fp32_islands import TOP_LEVEL, LayerView, fp32_layers
from sr_export.builders.layer_precisions import (
    check_precision,
    layer_precision,
    precision_summary,
    tensor_type,
)
from sr_export.builders.tensorrt_builder import (
    check_settings,
    polygraphy_profile,
    profile_shapes,
    timing_cache_path,
)
from sr_export.builders.tensorrt_typing import tensorrt_typing
from sr_export.cli import main
from sr_export.compare import compare_bundles, reference_bundle
from sr_export.families.invsr import InvSRExport
from sr_export.families.invsr.graphs import GRAPHS, NOISE_PREDICTOR, UNET_STEP
from sr_export.families.invsr.schedule import DEFAULT_TIMESTEPS
from sr_export.families.invsr.source import resolve_source
from sr_export.onnx_export import export_graph
from sr_runtime.backends import backend_for
from sr_runtime.backends.base import GpuInfo, RuntimeOptions
from sr_runtime.bundle_manifest import parse_manifest, read_manifest
from sr_runtime.errors import SRError
from sr_runtime.families.invsr.graphs import dims
from sr_runtime.families.invsr.section import Geometry, InvSRSection, StepGroup
from sr_runtime.manifest import (
    MANIFEST_NAME,
    Manifest,
    PipelineInfo,
    TargetInfo,
)
from sr_runtime.pipeline import Upscaler
from sr_runtime.precision import Precision
from sr_runtime.version import TOOL_VERSION

TILE, BATCH, EMBED = 32, 2, 32
GEOMETRY = Geometry(latent_channels=4, vae_factor=8, pad_multiple=16)
EMBED_SHAPE = (1, 77, EMBED)
H100 = GpuInfo("NVIDIA H100 80GB HBM3", "9.0")
FP16, FP32 = Precision.FP16, Precision.FP32


def _quiet(_message: str) -> None:
    pass


# ---- shape profiles ------------------------------------------------------------------------------

def _dims(batch: int):
    return dims(batch, TILE, GEOMETRY, EMBED_SHAPE)


@pytest.mark.parametrize("spec", GRAPHS, ids=lambda s: s.name)
def test_profiles_from_specs(spec):
    profile = spec.profile(_dims(1), _dims(BATCH), _dims(BATCH))
    shapes = profile_shapes(profile)
    assert [name for name, *_ in shapes] == [t.name for t in spec.inputs]
    for (name, lo, opt, hi), t in zip(shapes, spec.inputs, strict=True):
        if t.scalar:  # timestep, sigma: one fp32 value whatever the batch
            assert lo == opt == hi == (1,), name
        else:  # batch 1 .. the build's batch, everything else fixed at the tile size
            assert lo[0] == 1 and opt[0] == hi[0] == BATCH and lo[1:] == opt[1:] == hi[1:], name
    assert dict(shapes_by_name(UNET_STEP))["latent"][2] == (BATCH, 4, TILE // 2, TILE // 2)


def shapes_by_name(spec):
    profile = spec.profile(_dims(1), _dims(BATCH), _dims(BATCH))
    return [(name, (lo, opt, hi)) for name, lo, opt, hi in profile_shapes(profile)]


def test_a_profile_must_be_ordered():
    with pytest.raises(SRError, match="min <= opt <= max"):
        profile_shapes({"latent": [[2, 4, 16, 16], [1, 4, 16, 16], [2, 4, 16, 16]]})


def test_the_profile_becomes_polygraphys():
    profile = polygraphy_profile(profile_shapes(UNET_STEP.profile(_dims(1), _dims(BATCH), _dims(BATCH))))
    assert list(profile) == [t.name for t in UNET_STEP.inputs]
    latent = profile["latent"]
    assert (tuple(latent.min), tuple(latent.opt), tuple(latent.max)) == (
        (1, 4, 16, 16), (BATCH, 4, 16, 16), (BATCH, 4, 16, 16))


def test_settings_are_checked(tmp_path):
    check_settings(EngineSettings(FP16, tmp_path))
    with pytest.raises(SRError, match="opt-level"):
        check_settings(EngineSettings(FP16, tmp_path, opt_level=6))
    with pytest.raises(SRError, match="workspace"):
        check_settings(EngineSettings(FP16, tmp_path, workspace_gib=0))


def test_timing_cache_is_per_tensorrt_version_and_gpu(tmp_path):
    path = timing_cache_path(tmp_path, "10.14.1.48", H100)
    assert path == tmp_path / ".timing-cache-trt10.14.1.48-nvidia-h100-80gb-hbm3-sm90.bin"
    assert timing_cache_path(tmp_path, "11.4.0.106", H100) != path
    assert timing_cache_path(tmp_path, "10.14.1.48", GpuInfo("NVIDIA A100-SXM4-80GB", "8.0")) != path


# ---- which ONNX each combination exports ------------------------------------------------------------

@pytest.mark.parametrize(
    "backend, precision, strongly_typed, onnx_wanted",
    [
        ("onnxruntime-cpu", FP32, False, FP32),
        ("onnxruntime-cuda", FP16, False, FP16),
    ],
)
def test_onnxruntime_exports_the_bundle_precision(backend, precision, strongly_typed, onnx_wanted):
    assert BACKENDS[backend].onnx_precision(precision, strongly_typed) is onnx_wanted


@pytest.mark.parametrize(
    "precision, strongly_typed, version, onnx_wanted",
    [
        (FP16, False, "10.14.1.48", FP32),  # weak typing: fp32 graph + BuilderFlag.FP16
        (FP16, True, "10.14.1.48", FP16),
        (FP16, False, "11.4.0.106", FP16),  # 11 is always strongly typed
        (FP16, True, "11.4.0.106", FP16),
        (FP32, False, "10.14.1.48", FP32),
        (FP32, False, "11.4.0.106", FP32),
    ],
)
def test_tensorrt_onnx_precision_per_version(precision, strongly_typed, version, onnx_wanted):
    assert BACKENDS["tensorrt"].onnx_precision(precision, strongly_typed, version) is onnx_wanted


def test_tensorrt_typing():
    assert tensorrt_typing(FP16, False, "10.8.0").fp16_flag
    assert not tensorrt_typing(FP16, False, "10.8.0").strongly_typed
    assert tensorrt_typing(FP16, False, "11.0.0").strongly_typed
    assert not tensorrt_typing(FP16, False, "11.0.0").fp16_flag  # the flag does not exist on 11
    assert not tensorrt_typing(FP32, False, "10.8.0").fp16_flag
    with pytest.raises(SRError, match="too old"):
        tensorrt_typing(FP16, False, "10.0.1")


def test_onnx_precision_without_tensorrt_says_so(monkeypatch):
    monkeypatch.setattr("sr_export.builders.tensorrt_typing.installed_version", lambda: None)
    with pytest.raises(SRError, match="not installed"):
        BACKENDS["tensorrt"].onnx_precision(FP16, False)


# ---- fp32 islands of a weakly typed fp16 build ------------------------------------------------------

def test_fp32_island_rules():
    layers = [
        LayerView("/unet/time_proj/Mul", "ELEMENTWISE", ("timestep", "freqs"), ("t1",), True),
        LayerView("/unet/time_proj/Sin", "UNARY", ("t1",), ("t2",), True),
        LayerView("/unet/Shape", "SHAPE", (), ("s",), False),
        LayerView("/unet/Expand", "SLICE", ("t2",), ("t3",), True),  # the shape input is int: ignored
        LayerView("/unet/conv_in/Conv", "CONVOLUTION", ("latent", "w"), ("h",), True),
        LayerView("/unet/down/resnets.0/Add", "ELEMENTWISE", ("h", "t3"), ("h2",), True),  # activation flows in
        LayerView("(Unnamed Layer* 9) [Normalization]", "NORMALIZATION", ("h2",), ("n",), True),
        LayerView("/unet/down/resnets.0/norm1/Mul", "ELEMENTWISE", ("n", "gamma"), ("n2",), True),
        LayerView("/Mul_3", "ELEMENTWISE", ("n2", "sigma"), ("out",), True),  # stage glue: Euler update
        LayerView("/vq/quantize/MatMul", "MATRIX_MULTIPLY", ("out", "codebook"), ("d",), True),  # VQ distances
        LayerView("/Cast_9", "CAST", ("out",), ("idx",), False),  # int output: never pinned
    ]
    chosen = fp32_layers(layers, ["timestep", "sigma"], constants=["freqs", "w", "gamma", "codebook"])
    assert chosen == [
        "/unet/time_proj/Mul", "/unet/time_proj/Sin", "/unet/Expand",
        "(Unnamed Layer* 9) [Normalization]", "/unet/down/resnets.0/norm1/Mul", "/Mul_3", "/vq/quantize/MatMul",
    ]


FLOATS = {TensorProto.FLOAT, TensorProto.FLOAT16}
NORM_OPS = {"InstanceNormalization": "NORMALIZATION", "LayerNormalization": "NORMALIZATION", "Constant": "CONSTANT"}


def _views(model: onnx.ModelProto) -> tuple[list[LayerView], set[str]]:
    """An ONNX graph as the LayerViews TensorRT's parsed network would give (node name = layer name)."""
    g = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*g.input, *g.output, *g.value_info)}
    types.update({i.name: i.data_type for i in g.initializer})
    for n in g.node:
        if n.op_type == "Constant":
            value = next((a.t.data_type for a in n.attribute if a.name == "value"), TensorProto.INT64)
            types.update({o: value for o in n.output})
    views = [
        LayerView(n.name, NORM_OPS.get(n.op_type, n.op_type.upper()),
                  tuple(t for t in n.input if t and types.get(t) in FLOATS), tuple(n.output),
                  all(types.get(t) in FLOATS for t in n.output))
        for n in g.node
    ]
    return views, {i.name for i in g.initializer}


def _fp32_nodes_of_fp16_graph(model: onnx.ModelProto) -> set[tuple[str, str]]:
    """(scope-and-op, op) of the fp16 export's fp32 computations, the constant ones (shape-derived
    scales) and the casts left out; numbered suffixes dropped, as the two exports number nodes apart."""
    views, constants = _views(model)
    g = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*g.input, *g.output, *g.value_info)}
    ops = {n.name: n.op_type for n in g.node}
    out = set()
    for v in views:
        if v.kind == "CONSTANT" or all(t in constants for t in v.float_inputs):
            constants.update(v.outputs)
            continue
        if ops[v.name] not in ("Cast", "Shape") and types.get(v.outputs[0]) == TensorProto.FLOAT:
            out.add((re.sub(r"_\d+$", "", v.name), ops[v.name]))
    return out


@pytest.fixture(scope="module")
def exported(tiny_components, tmp_path_factory):
    """The UNet step and the noise predictor, exported fp32 and fp16 at the test tile size."""
    root = tmp_path_factory.mktemp("onnx")
    graphs = {}
    sizes = dims(1, TILE, tiny_components.geometry, (1, 77, tiny_components.embed_width))
    for precision in (Precision.FP32, Precision.FP16):
        for spec in (UNET_STEP, NOISE_PREDICTOR):
            path = export_graph(spec, tiny_components, precision, root / precision.value / f"{spec.name}.onnx", sizes)
            graphs[spec.name, precision] = onnx.load(str(path))
    return graphs


@pytest.mark.parametrize("spec", [UNET_STEP, NOISE_PREDICTOR], ids=lambda s: s.name)
@pytest.mark.slow
def test_fp32_islands_cover_what_the_fp16_export_keeps_fp32(exported, spec):
    model = exported[spec.name, FP32]
    views, constants = _views(model)
    chosen = fp32_layers(views, [t.name for t in spec.inputs if t.scalar], constants)
    ops = {n.name: n.op_type for n in model.graph.node}
    covered = {(re.sub(r"_\d+$", "", name), ops[name]) for name in chosen}
    assert _fp32_nodes_of_fp16_graph(exported[spec.name, FP16]) <= covered
    # ... and no more than that: no convolution or attention matmul is pinned.
    assert not [n for n in chosen if ops[n] in ("Conv", "MatMul")]
    assert [n for n in chosen if ops[n] == "Gemm"] == [n for n in chosen if ops[n] == "Gemm" and "time_emb" in n]
    norms = [n.name for n in model.graph.node if n.op_type in ("InstanceNormalization", "LayerNormalization")]
    assert norms and set(norms) <= set(chosen)
    assert any(TOP_LEVEL.match(n) for n in chosen)  # the sigma arithmetic around the network


# ---- the engine inspector's layer precisions --------------------------------------------------------

def _tensor(name, dims, fmt):
    return {"Name": name, "Location": "Device", "Dimensions": dims, "Format/Datatype": fmt}


# What IEngineInspector.get_engine_information(LayerInformationFormat.JSON) gives for a TensorRT 10 engine
# built with ProfilingVerbosity.DETAILED (the documented layer format), shortened to a few layers.
TRT10_FP16 = json.dumps({"Layers": [
    {"Name": "Reformatting CopyNode for Input Tensor 0 to /unet/conv_in/Conv", "LayerType": "Reformat",
     "Inputs": [_tensor("latent", [2, 4, 16, 16], "Row major linear FP16 format")],
     "Outputs": [_tensor("Reformatted Input Tensor 0 to /unet/conv_in/Conv", [2, 4, 16, 16],
                         "Channel major FP16 format where channel % 8 == 0")],
     "ParameterType": "Reformat", "Origin": "REFORMAT", "TacticValue": "0x00000000000003e8", "StreamId": 0},
    {"Name": "/unet/conv_in/Conv", "LayerType": "CaskConvolution",
     "Inputs": [_tensor("Reformatted Input Tensor 0 to /unet/conv_in/Conv", [2, 4, 16, 16],
                        "Channel major FP16 format where channel % 8 == 0")],
     "Outputs": [_tensor("/unet/conv_in/Conv_output_0", [2, 32, 16, 16],
                         "Channel major FP16 format where channel % 8 == 0")],
     "ParameterType": "Convolution", "Kernel": [3, 3], "PaddingMode": "kEXPLICIT_ROUND_DOWN",
     "PrePadding": [1, 1], "PostPadding": [1, 1], "Stride": [1, 1], "Dilation": [1, 1], "OutMaps": 32,
     "Groups": 1, "Weights": {"Type": "Half", "Count": 1152}, "Bias": {"Type": "Half", "Count": 32},
     "Activation": "NONE", "TacticName": "sm90_xmma_fprop_implicit_gemm_f16f16_f16f16_f16_nhwckrsc_nhwc",
     "TacticValue": "0x2d9f0b1c0e8c6b1a", "StreamId": 0, "Metadata": "[ONNX Layer: /unet/conv_in/Conv]"},
    {"Name": "/unet/down_blocks.0/resnets.0/norm1/InstanceNormalization", "LayerType": "Normalization",
     "Inputs": [_tensor("/unet/down_blocks.0/resnets.0/norm1/Reshape_output_0", [2, 8, 1024],
                        "Row major linear FP32 format")],
     "Outputs": [_tensor("/unet/down_blocks.0/resnets.0/norm1/InstanceNormalization_output_0", [2, 8, 1024],
                         "Row major linear FP32 format")],
     "TacticValue": "0x0000000000000000", "StreamId": 0},
    {"Name": "{ForeignNode[/unet/down_blocks.0/attentions.0/proj_in/MatMul.../proj_out/MatMul]}",
     "LayerType": "Myelin",
     "Inputs": [_tensor("/unet/down_blocks.0/resnets.0/Add_1_output_0", [2, 32, 16, 16], "Half")],
     "Outputs": [_tensor("/unet/down_blocks.0/attentions.0/Add_output_0", [2, 32, 16, 16], "Half")],
     "TacticValue": "0x0000000000000000", "StreamId": 0},
    {"Name": "/unet/Shape", "LayerType": "Shape",
     "Inputs": [], "Outputs": [_tensor("/unet/Shape_output_0", [4], "Row major linear Int64 format")]},
    {"Name": "/Mul_3 + /Add_1", "LayerType": "PointWiseV2",
     "Inputs": [_tensor("/unet/conv_out/Conv_output_0", [2, 4, 16, 16], "Row major linear FP32 format"),
                _tensor("sigma", [1], "Row major linear FP32 format")],
     "Outputs": [_tensor("latent_next", [2, 4, 16, 16], "Row major linear FP16 format")]},
], "Bindings": ["latent", "timestep", "sigma", "sigma_next", "prompt_embeds", "latent_next"]})


def _all_fp32(layers_json: str) -> str:
    """The same engine as it comes out when the fp16 request was silently dropped."""
    text = re.sub(r"FP16", "FP32", layers_json)
    return text.replace('"Half"', '"Float"')


def test_tensor_types_from_both_inspector_formats():
    assert tensor_type({"Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}) == "fp16"
    assert tensor_type({"Format/Datatype": "Row major linear FP32"}) == "fp32"
    assert tensor_type({"Format/Datatype": "Half"}) == "fp16"
    assert tensor_type({"Format/Datatype": "Float"}) == "fp32"
    assert tensor_type({"Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format."}) == "int8"
    assert tensor_type({"Format/Datatype": "N/A due to dynamic shapes"}) is None
    # TensorRT 11 splits the field: a DataType beside the Format.
    assert tensor_type({"Format": "Row major linear FP32 format (kLINEAR)", "DataType": "Half"}) == "fp16"
    assert tensor_type({"DataType": "BFloat16"}) == "bf16"
    assert tensor_type({"DataType": "Int64"}) == "int"


def test_precision_summary_of_an_fp16_engine():
    summary = precision_summary(TRT10_FP16)
    assert summary == {
        "verified": True, "layers": 6, "fp16": 2, "mixed": 1, "fp32": 1, "other": 2,
        "fp32_layers": ["/unet/down_blocks.0/resnets.0/norm1/InstanceNormalization"],
    }
    assert check_precision("unet_step", FP16, summary) is None


def test_an_fp16_engine_that_came_out_fp32_fails_the_build():
    summary = precision_summary(_all_fp32(TRT10_FP16))
    assert summary["fp16"] == 0 and summary["fp32"] == 4
    with pytest.raises(SRError, match="unet_step engine was asked for fp16"):
        check_precision("unet_step", FP16, summary)
    assert check_precision("unet_step", FP32, summary) is None


def test_fp16_io_around_fp32_layers_is_not_fp16():
    """The silent failure's usual shape: fp16 engine I/O reformatted into layers that all run fp32."""
    layers = json.loads(_all_fp32(TRT10_FP16))["Layers"]
    layers[0]["Inputs"][0]["Format/Datatype"] = "Row major linear FP16 format"  # a reformat from fp16 input
    layers[-1]["Outputs"][0]["Format/Datatype"] = "Row major linear FP16 format"  # the output cast
    summary = precision_summary(json.dumps({"Layers": layers}))
    assert summary["fp16"] == 0 and summary["mixed"] == 1
    with pytest.raises(SRError, match="asked for fp16"):
        check_precision("unet_step", FP16, summary)


def test_trt11_inspector_schema():
    layers = json.loads(TRT10_FP16)["Layers"]
    for layer in layers:  # 11: "Format" and "DataType" instead of "Format/Datatype"
        for t in (*layer["Inputs"], *layer["Outputs"]):
            fmt = t.pop("Format/Datatype")
            kind = tensor_type({"Format": fmt})
            t["Format"], t["DataType"] = fmt, {"fp16": "Half", "fp32": "Float", "int": "Int64"}[kind]
    io = [{"Name": "latent", "IOMode": "Input", "DataType": "Half", "Dimensions": [-1, 4, 16, 16],
           "Location": "Device", "IsShapeInferenceIO": False}]
    summary = precision_summary(json.dumps({"Layers": layers, "I/O Tensors": io}))
    assert (summary["fp16"], summary["fp32"], summary["mixed"]) == (2, 1, 1)


def test_an_engine_without_detailed_layers_is_unverified():
    names_only = json.dumps({"Layers": ["/unet/conv_in/Conv", "/unet/conv_out/Conv"], "Bindings": ["latent"]})
    summary = precision_summary(names_only)
    assert summary["verified"] is False
    assert "could not verify" in check_precision("unet_step", FP16, summary)
    dynamic = TRT10_FP16.replace("Row major linear FP16 format", "N/A due to dynamic shapes")
    dynamic = re.sub(r'"Format/Datatype": "[^"]*"', '"Format/Datatype": "N/A due to dynamic shapes"', dynamic)
    assert precision_summary(dynamic)["verified"] is False
    assert layer_precision({"LayerType": "Reformat", "Inputs": [{"Format/Datatype": "Half"}]}) == "other"


# ---- refusals without TensorRT ----------------------------------------------------------------------

def test_the_runtime_backend_imports_without_tensorrt_torch_or_cuda():
    code = (
        "import sys\n"
        "import sr_runtime.backends.tensorrt\n"
        "heavy = [m for m in ('torch', 'diffusers', 'tensorrt', 'cuda', 'sr_export') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


H100_TARGET = TargetInfo("NVIDIA H100 80GB HBM3", "9.0")


def _trt_manifest(version="10.14.1.48", target=H100_TARGET) -> Manifest:
    section = InvSRSection(GEOMETRY, 0.18215, [StepGroup([200], [199.0], [0.57, 0.0])], "prompt", list(EMBED_SHAPE))
    return Manifest(tool_version="x", backend="tensorrt", backend_version=version, precision=FP16, demo=True,
                    pipeline=PipelineInfo("invsr", 4, TILE, BATCH), section=section, graphs={}, checkpoints={},
                    target=target)


def test_backend_check_uses_installed_tensorrt_and_the_gpu(monkeypatch):
    backend = backend_for("tensorrt")
    monkeypatch.setattr("sr_runtime.backends.tensorrt.installed_version", lambda: None)
    with pytest.raises(SRError, match="TensorRT is not installed"):
        backend.check(_trt_manifest())
    monkeypatch.setattr("sr_runtime.backends.tensorrt.installed_version", lambda: "10.14.1.48")
    monkeypatch.setattr("sr_runtime.backends.cuda_device.gpu_info", lambda device_id=0: H100)
    backend.check(_trt_manifest())
    with pytest.raises(SRError, match="built with TensorRT 11.4.0.106.*rebuild"):
        backend.check(_trt_manifest("11.4.0.106"))
    with pytest.raises(SRError, match=r"compute capability 8\.9.*rebuild"):
        backend.check(_trt_manifest(target=TargetInfo("NVIDIA L4", "8.9")))
    monkeypatch.setattr("sr_runtime.backends.cuda_device.gpu_info", lambda device_id=0: None)
    with pytest.raises(SRError, match="no CUDA GPU"):
        backend.check(_trt_manifest())


def test_target_and_precision_summary_round_trip():
    manifest = _trt_manifest(target=TargetInfo("NVIDIA A100-SXM4-80GB", "8.0"))
    assert parse_manifest(json.loads(manifest.to_json())) == manifest
    data = json.loads(manifest.to_json())
    data["graphs"]["unet_step"] = {"file": "unet_step.plan", "sha256": "0" * 64, "size": 1, "inputs": [],
                                   "outputs": [], "precision_summary": precision_summary(TRT10_FP16)}
    again = parse_manifest(data)
    assert again.graphs["unet_step"].precision_summary["fp16"] == 2
    assert parse_manifest(json.loads(again.to_json())) == again


NO_TRT = "the tensorrt Python package is not installed (pip install 'sr-export[tensorrt]' on a CUDA machine)"


def test_build_with_tensorrt_missing_fails_at_once_in_one_line(monkeypatch):
    monkeypatch.setattr(backends.TensorRT, "problem", lambda self: NO_TRT)

    def no_loading(*args, **kwargs):
        raise AssertionError("checkpoints loaded before the backend was checked")

    monkeypatch.setattr(InvSRExport, "source", no_loading)
    result = CliRunner().invoke(main, ["build", "--backend", "tensorrt", "--tile", "32"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [f"error: --backend tensorrt: {NO_TRT}"]
    assert "Traceback" not in result.output


@pytest.mark.skipif(BACKENDS["tensorrt"].problem() is None, reason="TensorRT is usable here")
def test_build_with_the_real_tensorrt_check_fails_in_one_line():
    result = CliRunner().invoke(main, ["build", "--backend", "tensorrt", "--tile", "32"])
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: --backend tensorrt: ")


def test_auto_skips_tensorrt_silently(monkeypatch, capsys, caplog):
    monkeypatch.setattr(backends.TensorRT, "problem", lambda self: NO_TRT)
    monkeypatch.setattr(backends.OnnxRuntimeCuda, "problem", lambda self: "no CUDA EP")
    assert select_backend("auto") is BACKENDS["onnxruntime-cpu"]
    assert capsys.readouterr() == ("", "") and not caplog.records


def test_tensorrt_options_are_refused_for_onnxruntime_builds():
    result = CliRunner().invoke(main, ["build", "--backend", "onnxruntime-cpu", "--opt-level", "5", "--tile", "32"])
    assert result.exit_code == 1
    assert "--opt-level: TensorRT options" in result.stderr
    result = CliRunner().invoke(main, ["build", "--backend", "tensorrt", "--opt-level", "9"])
    assert result.exit_code == 2 and "0<=x<=5" in result.output


# ---- sr-export compare, on two ONNX Runtime bundles -------------------------------------------------

@pytest.fixture(scope="module")
def source(tiny_checkpoints):
    sd, pth, yaml = tiny_checkpoints
    return resolve_source(sd, pth, yaml, (DEFAULT_TIMESTEPS[1],), report=_quiet)


def _build(source, folder: Path, backend: str, precision: Precision, steps: int = 2, **kw) -> Path:
    opts = BuildOptions(backend=backend, precision=precision, tile=TILE, batch=BATCH, output=folder, **kw)
    return build_bundle(source.with_groups(DEFAULT_TIMESTEPS[steps]), opts, report=_quiet)


@pytest.fixture(scope="module")
def ort_bundles(source, tmp_path_factory):
    root = tmp_path_factory.mktemp("ort")
    return {p.value: _build(source, root / p.value, "onnxruntime-cpu", p) for p in (Precision.FP32, Precision.FP16)}


# fp16 weights and activations of a tiny random network against fp32, per call on the same inputs:
# what fp16 rounding costs (a wrong binding or a broken graph gives < 15 dB).
MIN_CALL_PSNR_FP16 = 35.0
MIN_END_TO_END_PSNR_FP16 = 35.0


def test_compare_an_fp16_bundle_with_its_fp32_reference(ort_bundles):
    result = compare_bundles(ort_bundles["fp16"], ort_bundles["fp32"])
    labels = [c.call for c in result.calls]
    assert labels == ["vae_encoder", "noise_predictor", "unet_step[0]", "unet_step[1]", "vae_decoder"]
    assert all(np.isfinite(c.psnr) and c.psnr >= MIN_CALL_PSNR_FP16 for c in result.calls), result.lines()
    assert MIN_END_TO_END_PSNR_FP16 <= result.end_to_end < float("inf")
    same = compare_bundles(ort_bundles["fp32"], ort_bundles["fp32"], tiles=1)
    assert same.end_to_end == float("inf") and all(c.psnr == float("inf") for c in same.calls)


@pytest.mark.slow
def test_compare_builds_its_own_reference_from_the_cached_onnx(ort_bundles):
    options = {"noise_predictor_config": None}  # the YAML beside the noise predictor
    reference = reference_bundle(ort_bundles["fp16"], options, report=_quiet)
    manifest = json.loads((reference / MANIFEST_NAME).read_text())
    assert (manifest["backend"], manifest["precision"]) == ("onnxruntime-cpu", "fp32")
    assert reference_bundle(ort_bundles["fp16"], options, report=_quiet) == reference  # built once
    result = CliRunner().invoke(main, ["compare", str(ort_bundles["fp16"])])
    assert result.exit_code == 0, result.output
    assert re.search(r"unet_step\[1\]\s+latent_next\s+\d", result.stdout)
    assert "end to end" in result.stdout


def test_compare_refuses_a_reference_of_another_schedule(source, ort_bundles, tmp_path):
    other = _build(source, tmp_path / "s1", "onnxruntime-cpu", FP32, steps=1)
    with pytest.raises(SRError, match="differs from the bundle in groups"):
        compare_bundles(ort_bundles["fp16"], other)


# ---- real TensorRT engines (skipped without TensorRT and a GPU) ------------------------------------

# TensorRT fp16 against ONNX Runtime fp32 on the tiny model: fp16 rounding plus TensorRT's own tactic
# choices (fused attention, different accumulation order). fp32 builds may use TF32.
MIN_TRT_FP16_PSNR = 30.0
MIN_TRT_FP32_PSNR = 40.0


@pytest.fixture(scope="module")
def trt_bundles(source, tmp_path_factory):
    root = tmp_path_factory.mktemp("trt")
    return {p.value: _build(source, root / p.value, "tensorrt", p, opt_level=2) for p in (Precision.FP32, Precision.FP16)}


@pytest.fixture(scope="module")
def ort_reference(source, tmp_path_factory):
    return _build(source, tmp_path_factory.mktemp("ref") / "fp32", "onnxruntime-cpu", FP32)


@pytest.mark.tensorrt
def test_each_graph_builds_with_its_precision_recorded(trt_bundles):
    import tensorrt as trt

    from sr_runtime.backends.cuda_device import gpu_info

    manifest = read_manifest(trt_bundles["fp16"], TOOL_VERSION)
    gpu = gpu_info(0)
    assert manifest.backend_version == trt.__version__
    assert (manifest.target.gpu_name, manifest.target.compute_capability) == (gpu.name, gpu.compute_capability)
    assert set(manifest.graphs) == {s.name for s in GRAPHS}
    for name, graph in manifest.graphs.items():
        assert graph.file == f"{name}.plan"
        assert graph.precision_summary["verified"] and graph.precision_summary["fp16"] > 0, name
    caches = list(trt_bundles["fp16"].parent.glob(".timing-cache-trt*.bin"))
    assert len(caches) == 1 and caches[0].stat().st_size > 0  # beside the bundle, shared by both builds


@pytest.mark.tensorrt
@pytest.mark.parametrize("precision, bound", [("fp16", MIN_TRT_FP16_PSNR), ("fp32", MIN_TRT_FP32_PSNR)])
def test_tensorrt_chain_matches_onnxruntime_fp32(trt_bundles, ort_reference, precision, bound):
    result = compare_bundles(trt_bundles[precision], ort_reference)
    assert all(c.psnr >= bound for c in result.calls), "\n".join(result.lines())
    assert result.end_to_end >= bound, "\n".join(result.lines())


@pytest.mark.tensorrt
def test_cuda_graph_replay_equals_the_plain_run(trt_bundles):
    plain = Upscaler.from_bundle(trt_bundles["fp16"])
    graphed = Upscaler.from_bundle(trt_bundles["fp16"], options=RuntimeOptions(cuda_graph=True))
    rng = np.random.default_rng(3)
    for n in (BATCH, 1, BATCH):  # a full batch, a partial one, then a replay of the first graph
        tiles = (rng.random((n, 3, TILE, TILE), dtype=np.float32),
                 rng.standard_normal((n, 4, TILE // 2, TILE // 2), dtype=np.float32),
                 rng.standard_normal((n, 4, TILE // 2, TILE // 2), dtype=np.float32))
        want = plain.run_tiles(*tiles)
        first, replay = graphed.run_tiles(*tiles), graphed.run_tiles(*tiles)
        # The same kernels on the same buffers: equal up to reduction order in atomics-based tactics.
        np.testing.assert_allclose(first, want, atol=1e-3)
        np.testing.assert_allclose(replay, want, atol=1e-3)
    assert graphed._chain.captured


@pytest.mark.tensorrt
@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(backend_version="9.9.9"), "built with TensorRT 9.9.9"),
    (lambda d: d["target"].update(compute_capability="1.0"), "compute capability 1.0"),
])
def test_a_plan_built_elsewhere_is_refused(trt_bundles, tmp_path, edit, message):
    bundle = shutil.copytree(trt_bundles["fp16"], tmp_path / "b")
    edit_manifest(bundle, edit)
    with pytest.raises(SRError, match=f"{re.escape(message)}.*rebuild"):
        Upscaler.from_bundle(bundle)


@pytest.mark.tensorrt
def test_weakly_typed_tensorrt10_build_keeps_norms_in_fp32(source, tmp_path):
    import tensorrt as trt

    if int(trt.__version__.split(".")[0]) >= 11:
        pytest.skip("TensorRT 11 builds strongly typed only")
    bundle = _build(source, tmp_path / "weak", "tensorrt", FP16, steps=1, opt_level=2)
    summary = json.loads((bundle / MANIFEST_NAME).read_text())["graphs"]["vae_decoder"]["precision_summary"]
    assert summary["fp16"] > 0 and summary["fp32"] > 0
    strong = _build(source, tmp_path / "strong", "tensorrt", FP16, steps=1, opt_level=2, strongly_typed=True)
    assert json.loads((strong / MANIFEST_NAME).read_text())["graphs"]["unet_step"]["precision_summary"]["fp16"] > 0
