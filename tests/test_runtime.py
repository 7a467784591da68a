"""The thin runtime on a tiny, genuine bundle of ONNX stand-ins (``standin_bundle``): the chaining
(which buffer feeds which engine, the constants, batching, dtypes) and every refusal, not the networks."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from helpers import edit_manifest, needs_cuda_ep
from standin_bundle import (
    EMBEDS,
    GEOMETRY,
    GRAPH_IO,
    TILE,
    TOLERANCE,
    numpy_run_tiles,
    random_tiles,
    schedule,
    write_bundle,
)

from sr_runtime.backends import backend_for
from sr_runtime.backends.base import GpuInfo, RuntimeOptions, check_tensorrt_target
from sr_runtime.backends.onnxruntime import BoundChain
from sr_runtime.bundle_check import verify_bundle
from sr_runtime.bundle_manifest import parse_manifest, read_manifest
from sr_runtime.errors import SRError
from sr_runtime.families.invsr.chain import invsr_plan, steps_chain
from sr_runtime.families.invsr.image_loop import UpscaleSettings, upscale_array
from sr_runtime.manifest import MANIFEST_NAME, FileRecord, Manifest, TargetInfo
from sr_runtime.pipeline import Upscaler
from sr_runtime.sd.prompt_embeds import PROMPT_EMBEDS_NAME
from sr_runtime.version import TOOL_VERSION

HAS_CUDA_EP = "CUDAExecutionProvider" in ort.get_available_providers()

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
    expected = upscale_array(image, numpy_run_tiles(*schedule(2), "fp32"), settings, [2], GEOMETRY)
    assert got.shape == (160, 96, 3)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("fixed_batch", [False, True])
def test_io_binding_chain_on_cpu_matches_numpy(tmp_path, precision, fixed_batch):
    """The CUDA backend's bound chain, run with CPU buffers: binding, ping-pong, padding and dtypes."""
    bundle = write_bundle(tmp_path / "b", precision, steps=3, batch=3)
    manifest = read_manifest(bundle, TOOL_VERSION)
    sessions = backend_for("onnxruntime-cpu").open(bundle, manifest)
    group = manifest.section.groups[0]
    chain = BoundChain(sessions, lambda c, n, h, w: invsr_plan(manifest.section, group, TILE, EMBEDS, n), 3, "cpu",
                       fixed_batch=fixed_batch)
    reference = numpy_run_tiles(*schedule(3), precision)
    results = []
    for n, seed in [(3, 1), (2, 2), (3, 3)]:
        tiles = random_tiles(n, seed)
        results.append(chain({"lr": tiles[0], "predictor_noise": tiles[1], "vae_noise": tiles[2]}, steps_chain(0)))
        np.testing.assert_allclose(results[-1].astype(np.float32), reference(*tiles), atol=TOLERANCE[precision])
    # Results are the caller's: later batches must not overwrite them through a shared device buffer.
    np.testing.assert_allclose(results[0].astype(np.float32), reference(*random_tiles(3, 1)), atol=TOLERANCE[precision])
    # A captured CUDA graph replays fixed addresses: a fixed-batch chain must pad, never bind a second size.
    first = steps_chain(0)
    assert chain.plan_keys == (((first, 3, TILE, TILE),) if fixed_batch
                               else ((first, 3, TILE, TILE), (first, 2, TILE, TILE)))


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


def test_refuses_an_interrupted_build(tmp_path):
    bundle = write_bundle(tmp_path / "b")
    (bundle / MANIFEST_NAME).unlink()
    assert "manifest.json is missing" in _refusal(bundle)


@pytest.mark.parametrize(
    ("key", "value"), [("tool_version", "0.0.1-other"), ("format_version", 99)], ids=["tool", "format"]
)
def test_refuses_another_version(tmp_path, key, value):
    bundle = write_bundle(tmp_path / "b")
    edit_manifest(bundle, lambda d: d.update({key: value}))
    assert "rebuild it" in _refusal(bundle)


def test_refuses_a_truncated_engine(tmp_path):
    bundle = write_bundle(tmp_path / "b")
    data = (bundle / "unet_step.onnx").read_bytes()
    (bundle / "unet_step.onnx").write_bytes(data[: len(data) // 2])
    assert "unet_step.onnx" in _refusal(bundle)


def test_refuses_an_unknown_backend(tmp_path):
    bundle = write_bundle(tmp_path / "b")
    edit_manifest(bundle, lambda d: d.update(backend="tflite"))
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
    edit_manifest(bundle, lambda d: d["graphs"]["unet_step"].update(data_files=[record]))
    assert "unet_step.onnx.data" in _refusal(bundle)


def test_refuses_when_onnxruntime_is_missing(tmp_path, monkeypatch):
    bundle = write_bundle(tmp_path / "b")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    monkeypatch.delitem(sys.modules, "sr_runtime.backends.onnxruntime")
    assert "pip install" in _refusal(bundle)


def test_refuses_inconsistent_sigmas(tmp_path):
    bundle = write_bundle(tmp_path / "b", steps=2)
    edit_manifest(bundle, lambda d: d["section"]["groups"][0]["sigmas"].pop())
    assert "sigmas" in _refusal(bundle)


@pytest.mark.parametrize(("where", "field", "value", "fragment"), [
    ("pipeline", "tile", "16", "manifest.pipeline.tile must be int"),
    ("section", "groups", None, "manifest.section.groups must be a list"),
    ("section", "geometry", {"latent_channels": 4}, "manifest.section.geometry lacks the field vae_factor"),
    ("section", "steps", 3, "unknown field(s) steps"),
    (None, "precision", "int8", "manifest.precision must be one of fp32, fp16"),
    (None, "demo", "no", "manifest.demo must be bool"),
])
def test_refuses_fields_of_the_wrong_type_in_one_line(tmp_path, where, field, value, fragment):
    bundle = write_bundle(tmp_path / "b")
    edit_manifest(bundle, lambda d: (d[where] if where else d).update({field: value}))
    message = _refusal(bundle)
    assert fragment in message and "malformed" in message


def test_refuses_graphs_the_chain_cannot_bind(tmp_path):
    bundle = write_bundle(tmp_path / "b")
    edit_manifest(bundle, lambda d: d["graphs"]["unet_step"]["inputs"][0].update(name="sample"))
    assert "unet_step" in _refusal(bundle)


def test_refuses_an_engine_that_contradicts_its_manifest(tmp_path):
    bundle = write_bundle(tmp_path / "b")

    def swap_files(d):  # file, size and hash move together, so only the graphs' own I/O can tell
        encoder, decoder = d["graphs"]["vae_encoder"], d["graphs"]["vae_decoder"]
        for key in ("file", "sha256", "size"):
            encoder[key], decoder[key] = decoder[key], encoder[key]

    edit_manifest(bundle, swap_files)
    assert "vae_decoder.onnx" in _refusal(bundle)


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size: only the hash can tell
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("changed", ["vae_decoder.onnx", PROMPT_EMBEDS_NAME])
def test_every_file_the_runtime_reads_is_verified_when_the_bundle_opens(tmp_path, changed):
    bundle = write_bundle(tmp_path / "b")
    assert sorted(verify_bundle(bundle)) == sorted([*(f"{name}.onnx" for name in GRAPH_IO), PROMPT_EMBEDS_NAME])
    _flip_last_byte(bundle / changed)
    with pytest.raises(SRError, match=f"{changed} changed since the build"):
        verify_bundle(bundle)
    assert f"{changed} changed since the build" in _refusal(bundle)
    if changed == PROMPT_EMBEDS_NAME:  # the documented opt-out opens it without reading every byte
        assert Upscaler.from_bundle(bundle, verify=False).run_tiles(*random_tiles(1)).shape == (1, 3, 4 * TILE, 4 * TILE)


def test_a_family_file_missing_from_the_manifest_is_refused(tmp_path):
    bundle = write_bundle(tmp_path / "b")
    edit_manifest(bundle, lambda d: d.update(files=[]))
    assert f"does not record {PROMPT_EMBEDS_NAME}" in _refusal(bundle)
    (bundle / PROMPT_EMBEDS_NAME).unlink()
    bundle = write_bundle(tmp_path / "c")
    (bundle / PROMPT_EMBEDS_NAME).unlink()
    assert f"{PROMPT_EMBEDS_NAME} of the family is missing" in _refusal(bundle)


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
