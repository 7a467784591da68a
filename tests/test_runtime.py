"""The thin runtime on a tiny, genuine bundle.

The four graphs here are hand-written ONNX stand-ins with the real graphs' names, inputs, outputs and
dtypes but simple math, recomputed in numpy below: they test the chaining (which buffer feeds which
engine, the constants, batching, dtypes), not the InvSR networks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from sr_runtime.backends import backend_for
from sr_runtime.backends.base import GpuInfo, RuntimeOptions, check_tensorrt_target
from sr_runtime.backends.onnxruntime import BoundChain
from sr_runtime.bundle_check import verify_bundle
from sr_runtime.errors import SRError
from sr_runtime.families.invsr.chain import invsr_plan
from sr_runtime.families.invsr.family import PROMPT_EMBEDS_NAME
from sr_runtime.families.invsr.graphs import GRAPHS
from sr_runtime.families.invsr.image_loop import UpscaleSettings, upscale_array
from sr_runtime.families.invsr.section import Geometry, InvSRSection
from sr_runtime.manifest import (
    MANIFEST_NAME,
    FileRecord,
    GraphInfo,
    Manifest,
    PipelineInfo,
    TargetInfo,
    TensorInfo,
    parse_manifest,
    read_manifest,
)
from sr_runtime.pipeline import Upscaler
from sr_runtime.precision import Precision
from sr_runtime.version import TOOL_VERSION

HAS_CUDA_EP = "CUDAExecutionProvider" in ort.get_available_providers()
needs_cuda_ep = pytest.mark.skipif(not HAS_CUDA_EP, reason="needs onnxruntime-gpu's CUDAExecutionProvider")

TILE = 16
LATENT = TILE // 2  # x4 then the VAE's /8
TOKENS, EMBED = 77, 8
SCALARS = ("timestep", "sigma", "sigma_next")

rng = np.random.default_rng(7)
W_ENC = rng.normal(size=(4, 3)).astype(np.float32)
B_ENC = rng.normal(size=4).astype(np.float32)
W_NP = rng.normal(size=(4, 3)).astype(np.float32)
W_DEC = rng.normal(size=(3, 4)).astype(np.float32)
B_DEC = rng.normal(size=3).astype(np.float32)
EMBEDS = rng.normal(size=(1, TOKENS, EMBED)).astype(np.float32)

GEOMETRY = Geometry(latent_channels=4, vae_factor=8, pad_multiple=16)  # SD-Turbo's
# name -> (inputs, outputs) with the symbolic dims the exporter writes into the manifest
GRAPH_IO = {io.name: ({t.name: t.dims for t in io.inputs}, {t.name: t.dims for t in io.outputs}) for io in GRAPHS}
SIZES = {"tile": TILE, "latent": LATENT, "image": 4 * TILE, "embed": EMBED, "tokens": TOKENS, "latent_channels": 4}


# ---- the stand-in math, in numpy --------------------------------------------------------------

def _pool(lr):
    n = len(lr)
    return lr.reshape(n, 3, LATENT, 2, LATENT, 2).mean(axis=(3, 5))


def _conv1x1(w, x):
    return np.einsum("oc,bchw->bohw", w, x)


def np_vae_encoder(lr, noise):
    return _conv1x1(W_ENC, _pool(lr)) + B_ENC[None, :, None, None] + 0.5 * noise


def np_noise_predictor(lr, timestep, noise, z_lr, sigma):
    return z_lr + sigma * (np.tanh(_conv1x1(W_NP, _pool(lr))) * (timestep / 1000) + noise)


def np_unet_step(latent, timestep, sigma, sigma_next, embeds):
    eps = np.tanh(latent / np.sqrt(sigma * sigma + 1)) + embeds.mean(axis=(1, 2))[:, None, None, None]
    return latent + (eps + timestep * 0.001) * (sigma_next - sigma)


def np_vae_decoder(latent):
    image = 1 / (1 + np.exp(-(_conv1x1(W_DEC, latent) + B_DEC[None, :, None, None])))
    return image.repeat(8, axis=2).repeat(8, axis=3)


def numpy_run_tiles(timesteps, sigmas, precision):
    """The chain of the stand-ins; fp16 rounds every non-scalar graph input and output like the engines."""
    io = (lambda x: x.astype(np.float16).astype(np.float32)) if precision == "fp16" else (lambda x: x)

    def run(lr, predictor_noise, vae_noise):
        lr, embeds = io(lr), io(np.repeat(EMBEDS, len(lr), axis=0))
        z_lr = io(np_vae_encoder(lr, io(vae_noise)))
        latent = io(np_noise_predictor(lr, timesteps[0], io(predictor_noise), z_lr, sigmas[0]))
        for i, t in enumerate(timesteps):
            latent = io(np_unet_step(latent, t, sigmas[i], sigmas[i + 1], embeds))
        return io(np_vae_decoder(latent)).astype(np.float32)

    return run


# ---- the same math as ONNX graphs -------------------------------------------------------------

def _graph_body(name: str) -> tuple[list, list]:
    """Nodes from ``in_<input>`` to ``out_<output>`` (fp32 inside), and their initializers."""
    n = helper.make_node
    pool = n("AveragePool", ["in_lr"], ["pooled"], kernel_shape=[2, 2], strides=[2, 2])
    if name == "vae_encoder":
        init = [numpy_helper.from_array(W_ENC[:, :, None, None], "w"), numpy_helper.from_array(B_ENC, "b"),
                numpy_helper.from_array(np.float32(0.5), "half")]
        nodes = [pool, n("Conv", ["pooled", "w", "b"], ["conv"]), n("Mul", ["in_noise", "half"], ["scaled_noise"]),
                 n("Add", ["conv", "scaled_noise"], ["out_z_lr"])]
    elif name == "noise_predictor":
        init = [numpy_helper.from_array(W_NP[:, :, None, None], "w"), numpy_helper.from_array(np.float32(1000), "k")]
        nodes = [pool, n("Conv", ["pooled", "w"], ["conv"]), n("Tanh", ["conv"], ["th"]),
                 n("Div", ["in_timestep", "k"], ["tk"]), n("Mul", ["th", "tk"], ["pred0"]),
                 n("Add", ["pred0", "in_noise"], ["pred"]), n("Mul", ["pred", "in_sigma"], ["spred"]),
                 n("Add", ["in_z_lr", "spred"], ["out_latent"])]
    elif name == "unet_step":
        init = [numpy_helper.from_array(np.float32(1), "one"), numpy_helper.from_array(np.float32(0.001), "milli"),
                numpy_helper.from_array(np.array([3], np.int64), "axis3")]
        nodes = [n("Mul", ["in_sigma", "in_sigma"], ["s2"]), n("Add", ["s2", "one"], ["s2p1"]),
                 n("Sqrt", ["s2p1"], ["root"]), n("Div", ["in_latent", "root"], ["scaled"]),
                 n("Tanh", ["scaled"], ["th"]),
                 n("ReduceMean", ["in_prompt_embeds"], ["emb3"], axes=[1, 2], keepdims=1),
                 n("Unsqueeze", ["emb3", "axis3"], ["emb"]), n("Add", ["th", "emb"], ["eps0"]),
                 n("Mul", ["in_timestep", "milli"], ["tm"]), n("Add", ["eps0", "tm"], ["eps"]),
                 n("Sub", ["in_sigma_next", "in_sigma"], ["ds"]), n("Mul", ["eps", "ds"], ["delta"]),
                 n("Add", ["in_latent", "delta"], ["out_latent_next"])]
    else:
        init = [numpy_helper.from_array(W_DEC[:, :, None, None], "w"), numpy_helper.from_array(B_DEC, "b"),
                numpy_helper.from_array(np.array([1, 1, 8, 8], np.float32), "scales")]
        nodes = [n("Conv", ["in_latent", "w", "b"], ["conv"]), n("Sigmoid", ["conv"], ["small"]),
                 n("Resize", ["small", "", "scales"], ["out_image"], mode="nearest",
                   coordinate_transformation_mode="asymmetric", nearest_mode="floor")]
    return nodes, init


def _onnx_dims(dims):
    return [d if isinstance(d, int) else (SIZES[d] if d in SIZES else d) for d in dims]


def make_onnx_graph(name: str, precision: str) -> onnx.ModelProto:
    inputs, outputs = GRAPH_IO[name]

    def elem(tensor: str):
        return TensorProto.FLOAT if precision == "fp32" or tensor in SCALARS else TensorProto.FLOAT16

    nodes, init = _graph_body(name)
    entry = [helper.make_node("Cast", [t], [f"in_{t}"], to=TensorProto.FLOAT) for t in inputs]
    exit_ = [helper.make_node("Cast", [f"out_{t}"], [t], to=elem(t)) for t in outputs]
    graph = helper.make_graph(
        entry + nodes + exit_,
        name,
        [helper.make_tensor_value_info(t, elem(t), _onnx_dims(d)) for t, d in inputs.items()],
        [helper.make_tensor_value_info(t, elem(t), _onnx_dims(d)) for t, d in outputs.items()],
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def schedule(steps: int) -> tuple[list[float], list[float]]:
    return [249.0 - 50 * i for i in range(steps)], [0.69 - 0.2 * i for i in range(steps)] + [0.03]


def write_bundle(folder: Path, precision: str = "fp32", backend="onnxruntime-cpu", steps=2, batch=3, demo=False) -> Path:
    folder.mkdir(parents=True)
    graphs = {}
    for name, (inputs, outputs) in GRAPH_IO.items():
        file = folder / f"{name}.onnx"
        onnx.save(make_onnx_graph(name, precision), str(file))

        def infos(tensors):
            return [TensorInfo(t, "float32" if precision == "fp32" or t in SCALARS else "float16", list(d))
                    for t, d in tensors.items()]

        graphs[name] = GraphInfo(file.name, hashlib.sha256(file.read_bytes()).hexdigest(), file.stat().st_size,
                                 infos(inputs), infos(outputs))
    timesteps, sigmas = schedule(steps)
    section = InvSRSection(geometry=GEOMETRY, latent_scale=0.18215, cli_timesteps=[int(t) + 1 for t in timesteps],
                           timesteps=timesteps, sigmas=sigmas, prompt="test", embed_shape=list(EMBEDS.shape))
    manifest = Manifest(tool_version=TOOL_VERSION, backend=backend, backend_version=ort.__version__,
                        precision=Precision(precision), demo=demo, section=section, graphs=graphs, checkpoints={},
                        pipeline=PipelineInfo(family="invsr", scale=4, tile=TILE, batch=batch))
    np.save(folder / PROMPT_EMBEDS_NAME, EMBEDS)
    (folder / MANIFEST_NAME).write_text(manifest.to_json())
    return folder


def random_tiles(n: int, seed: int = 0):
    g = np.random.default_rng(seed)
    lr = g.random((n, 3, TILE, TILE), dtype=np.float32)
    return lr, g.standard_normal((n, 4, LATENT, LATENT), np.float32), g.standard_normal((n, 4, LATENT, LATENT), np.float32)


TOLERANCE = {"fp32": 1e-5, "fp16": 2e-3}


# ---- tests ------------------------------------------------------------------------------------

def test_runtime_never_imports_torch_or_the_export_side():
    code = (
        "import importlib, pkgutil, sys, sr_runtime\n"
        "for m in pkgutil.walk_packages(sr_runtime.__path__, 'sr_runtime.'):\n"
        "    importlib.import_module(m.name)\n"
        "assert 'sr_runtime.backends.tensorrt' in sys.modules and 'sr_runtime.families.rrdbnet' in sys.modules\n"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'sr_export') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("steps", [1, 2, 3])
def test_tile_chain_matches_numpy(tmp_path, precision, steps):
    upscaler = Upscaler.from_bundle(write_bundle(tmp_path / "b", precision, steps=steps, batch=3))
    tiles = random_tiles(3)
    expected = numpy_run_tiles(*schedule(steps), precision)(*tiles)
    got = upscaler.run_tiles(*tiles)
    assert got.dtype == np.float32 and got.shape == (3, 3, 4 * TILE, 4 * TILE)
    np.testing.assert_allclose(got, expected, atol=TOLERANCE[precision])


def test_partial_batches_after_full_ones(tmp_path):
    upscaler = Upscaler.from_bundle(write_bundle(tmp_path / "b", batch=4))
    reference = numpy_run_tiles(*schedule(2), "fp32")
    for n, seed in [(4, 1), (1, 2), (3, 3), (4, 4)]:
        tiles = random_tiles(n, seed)
        np.testing.assert_allclose(upscaler.run_tiles(*tiles), reference(*tiles), atol=1e-5)


@pytest.mark.parametrize("seed", [None, 5])
def test_upscale_matches_numpy_chain_with_a_partial_last_batch(tmp_path, seed):
    batch = 4
    upscaler = Upscaler.from_bundle(write_bundle(tmp_path / "b", batch=batch))
    image = np.random.default_rng(0).random((40, 24, 3), dtype=np.float32)
    progress = []
    got = upscaler.upscale(image, seed=seed, on_tiles_done=lambda done, total: progress.append((done, total)))
    total = progress[-1][1]
    assert total % batch != 0 and progress[-1][0] == total  # the last batch really was partial
    settings = UpscaleSettings(tile=TILE, batch=batch, seed=seed)
    expected = upscale_array(image, numpy_run_tiles(*schedule(2), "fp32"), settings, steps=2, geometry=GEOMETRY)
    assert got.shape == (160, 96, 3)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("fixed_batch", [False, True])
def test_io_binding_chain_on_cpu_matches_numpy(tmp_path, precision, fixed_batch):
    """The CUDA backend's bound chain, run with CPU buffers: binding, ping-pong, padding and dtypes."""
    bundle = write_bundle(tmp_path / "b", precision, steps=3, batch=3)
    manifest = read_manifest(bundle, TOOL_VERSION)
    sessions = backend_for("onnxruntime-cpu").open(bundle, manifest)
    chain = BoundChain(sessions, lambda n, h, w: invsr_plan(manifest.section, TILE, EMBEDS, n), 3, "cpu",
                       fixed_batch=fixed_batch)
    reference = numpy_run_tiles(*schedule(3), precision)
    results = []
    for n, seed in [(3, 1), (2, 2), (3, 3)]:
        tiles = random_tiles(n, seed)
        results.append(chain({"lr": tiles[0], "predictor_noise": tiles[1], "vae_noise": tiles[2]}))
        np.testing.assert_allclose(results[-1].astype(np.float32), reference(*tiles), atol=TOLERANCE[precision])
    # Results are the caller's: later batches must not overwrite them through a shared device buffer.
    np.testing.assert_allclose(results[0].astype(np.float32), reference(*random_tiles(3, 1)), atol=TOLERANCE[precision])
    # A captured CUDA graph replays fixed addresses: a fixed-batch chain must pad, never bind a second size.
    assert chain.tile_shapes == (((3, TILE, TILE),) if fixed_batch else ((3, TILE, TILE), (2, TILE, TILE)))


def test_upscale_rejects_a_non_rgb_array(tmp_path):
    upscaler = Upscaler.from_bundle(write_bundle(tmp_path / "b"))
    with pytest.raises(SRError, match="RGB"):
        upscaler.upscale(np.zeros((32, 32), np.float32))


def test_demo_bundle_warns(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        upscaler = Upscaler.from_bundle(write_bundle(tmp_path / "b", demo=True))
    assert upscaler.demo and "DEMO" in caplog.text


def _refusal(bundle: Path, **kwargs) -> str:
    with pytest.raises(SRError) as err:
        Upscaler.from_bundle(bundle, **kwargs)
    message = str(err.value)
    assert "\n" not in message
    return message


def _edit_manifest(bundle: Path, edit) -> None:
    data = json.loads((bundle / MANIFEST_NAME).read_text())
    edit(data)
    (bundle / MANIFEST_NAME).write_text(json.dumps(data))


def test_refuses_an_interrupted_build(tmp_path):
    bundle = write_bundle(tmp_path / "b")
    (bundle / MANIFEST_NAME).unlink()
    assert "manifest.json is missing" in _refusal(bundle)


@pytest.mark.parametrize(
    ("key", "value"), [("tool_version", "0.0.1-other"), ("format_version", 99)], ids=["tool", "format"]
)
def test_refuses_another_version(tmp_path, key, value):
    bundle = write_bundle(tmp_path / "b")
    _edit_manifest(bundle, lambda d: d.update({key: value}))
    assert "rebuild it" in _refusal(bundle)


def test_refuses_a_truncated_engine(tmp_path):
    bundle = write_bundle(tmp_path / "b")
    data = (bundle / "unet_step.onnx").read_bytes()
    (bundle / "unet_step.onnx").write_bytes(data[: len(data) // 2])
    assert "unet_step.onnx" in _refusal(bundle)


def test_refuses_an_unknown_backend(tmp_path):
    bundle = write_bundle(tmp_path / "b")
    _edit_manifest(bundle, lambda d: d.update(backend="tflite"))
    assert "tflite" in _refusal(bundle)


@pytest.mark.skipif(HAS_CUDA_EP, reason="the CUDA execution provider is present here")
def test_refuses_a_cuda_bundle_without_the_cuda_provider(tmp_path):
    bundle = write_bundle(tmp_path / "b", "fp16", backend="onnxruntime-cuda")
    assert "CUDAExecutionProvider" in _refusal(bundle)


def test_refuses_running_a_bundle_on_another_backend(tmp_path):
    bundle = write_bundle(tmp_path / "b")
    assert "built for onnxruntime-cpu" in _refusal(bundle, backend="onnxruntime-cuda")


def test_refuses_tensorrt_bundles_without_tensorrt(tmp_path):
    bundle = write_bundle(tmp_path / "b", backend="tensorrt")
    assert "tensorrt" in _refusal(bundle)


def test_refuses_a_missing_external_data_file(tmp_path):
    bundle = write_bundle(tmp_path / "b")
    record = {"file": "unet_step.onnx.data", "sha256": "0" * 64, "size": 10}
    _edit_manifest(bundle, lambda d: d["graphs"]["unet_step"].update(data_files=[record]))
    assert "unet_step.onnx.data" in _refusal(bundle)


def test_refuses_when_onnxruntime_is_missing(tmp_path, monkeypatch):
    bundle = write_bundle(tmp_path / "b")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    monkeypatch.delitem(sys.modules, "sr_runtime.backends.onnxruntime")
    assert "pip install" in _refusal(bundle)


def test_refuses_inconsistent_sigmas(tmp_path):
    bundle = write_bundle(tmp_path / "b", steps=2)
    _edit_manifest(bundle, lambda d: d["section"]["sigmas"].pop())
    assert "sigmas" in _refusal(bundle)


@pytest.mark.parametrize(("where", "field", "value", "fragment"), [
    ("pipeline", "tile", "16", "manifest.pipeline.tile must be int"),
    ("section", "sigmas", None, "manifest.section.sigmas must be a list"),
    ("section", "geometry", {"latent_channels": 4}, "manifest.section.geometry lacks the field vae_factor"),
    ("section", "steps", 3, "unknown field(s) steps"),
    (None, "precision", "int8", "manifest.precision must be one of fp32, fp16"),
    (None, "demo", "no", "manifest.demo must be bool"),
])
def test_refuses_fields_of_the_wrong_type_in_one_line(tmp_path, where, field, value, fragment):
    bundle = write_bundle(tmp_path / "b")
    _edit_manifest(bundle, lambda d: (d[where] if where else d).update({field: value}))
    message = _refusal(bundle)
    assert fragment in message and "malformed" in message


def test_refuses_graphs_the_chain_cannot_bind(tmp_path):
    bundle = write_bundle(tmp_path / "b")
    _edit_manifest(bundle, lambda d: d["graphs"]["unet_step"]["inputs"][0].update(name="sample"))
    assert "unet_step" in _refusal(bundle)


def test_refuses_an_engine_that_contradicts_its_manifest(tmp_path):
    bundle = write_bundle(tmp_path / "b")

    def swap_files(d):  # file, size and hash move together, so only the graphs' own I/O can tell
        encoder, decoder = d["graphs"]["vae_encoder"], d["graphs"]["vae_decoder"]
        for key in ("file", "sha256", "size"):
            encoder[key], decoder[key] = decoder[key], encoder[key]

    _edit_manifest(bundle, swap_files)
    assert "vae_decoder.onnx" in _refusal(bundle)


def test_verify_bundle_finds_changed_bytes(tmp_path):
    bundle = write_bundle(tmp_path / "b")
    assert sorted(verify_bundle(bundle)) == sorted(f"{name}.onnx" for name in GRAPH_IO)
    engine = bundle / "vae_decoder.onnx"
    data = bytearray(engine.read_bytes())
    data[-1] ^= 0xFF  # same size: only the hash can tell
    engine.write_bytes(bytes(data))
    with pytest.raises(SRError, match="vae_decoder.onnx"):
        verify_bundle(bundle)


def _trt_manifest(tmp_path, target: TargetInfo | None) -> Manifest:
    manifest = read_manifest(write_bundle(tmp_path / "b"), TOOL_VERSION)
    manifest.backend, manifest.backend_version, manifest.target = "tensorrt", "10.14.1", target
    return manifest


H100 = GpuInfo("NVIDIA H100 80GB HBM3", "9.0")


def test_tensorrt_target_check(tmp_path, caplog):
    manifest = _trt_manifest(tmp_path, TargetInfo("NVIDIA H100 80GB HBM3", "9.0"))
    check_tensorrt_target(manifest, "10.14.1", H100)
    with pytest.raises(SRError, match="TensorRT 10.14.1.*11.4"):
        check_tensorrt_target(manifest, "11.4.0", H100)
    with pytest.raises(SRError, match="not installed"):
        check_tensorrt_target(manifest, None, H100)
    with pytest.raises(SRError, match="compute capability 8.0"):
        check_tensorrt_target(manifest, "10.14.1", GpuInfo("NVIDIA A100-SXM4-80GB", "8.0"))
    with caplog.at_level(logging.WARNING):
        check_tensorrt_target(manifest, "10.14.1", GpuInfo("NVIDIA H100 PCIe", "9.0"))
    assert "H100 PCIe" in caplog.text


def test_manifest_round_trips_target_and_data_files(tmp_path):
    manifest = _trt_manifest(tmp_path, TargetInfo("NVIDIA H100 80GB HBM3", "9.0"))
    manifest.graphs["unet_step"].data_files = [FileRecord("unet_step.onnx.data", "ab" * 32, 123)]
    assert parse_manifest(json.loads(manifest.to_json())) == manifest


@needs_cuda_ep
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_cuda_io_binding_chain_matches_numpy(tmp_path, precision, cuda_graph):
    bundle = write_bundle(tmp_path / "b", precision, backend="onnxruntime-cuda", steps=3, batch=3)
    upscaler = Upscaler.from_bundle(bundle, options=RuntimeOptions(cuda_graph=cuda_graph))
    reference = numpy_run_tiles(*schedule(3), precision)
    # CUDA EP convolutions may use TF32 in fp32, hence the looser tolerance.
    for n, seed in [(3, 1), (1, 2), (3, 3), (2, 4)]:
        tiles = random_tiles(n, seed)
        np.testing.assert_allclose(upscaler.run_tiles(*tiles), reference(*tiles), atol=5e-3)
