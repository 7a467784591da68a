"""``sr-export build`` on tiny official-format checkpoints: ONNX graphs and ONNX Runtime bundles
against the PyTorch reference of the same weights and noise."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner
from helpers import edit_manifest, make_image, needs_cuda_ep, needs_openvino

from sr_export.builders import cpu_convolutions
from sr_export.builders.bundle_builder import BuildOptions, build_bundle
from sr_export.cli import main
from sr_export.families.invsr.graphs import GRAPHS
from sr_export.families.invsr.reference import InvSRReference
from sr_export.families.invsr.schedule import DEFAULT_TIMESTEPS, build_schedule
from sr_export.families.invsr.source import resolve_source
from sr_export.graph_spec import TORCH_DTYPES, torch_dtype
from sr_export.metrics import psnr
from sr_export.onnx_export import module_for_precision
from sr_runtime.backends.base import RuntimeOptions
from sr_runtime.errors import SRError
from sr_runtime.families.invsr.image_loop import UpscaleSettings
from sr_runtime.manifest import MANIFEST_NAME
from sr_runtime.pipeline import Upscaler
from sr_runtime.precision import Precision

TILE, BATCH = 32, 2
# ONNX Runtime fp32 vs PyTorch fp32 on the same weights: only kernel rounding differs.
MIN_PSNR = 45.0


def _quiet(_message: str) -> None:
    pass


@pytest.fixture(scope="module")
def source(tiny_checkpoints):
    sd, pth, yaml = tiny_checkpoints
    return resolve_source(sd, pth, yaml, (DEFAULT_TIMESTEPS[1],), report=_quiet)


def _build(source, folder: Path, steps: int, precision: Precision = Precision.FP32, timesteps=None,
           backend: str = "onnxruntime-cpu", **options) -> Path:
    source = source.with_groups(tuple(timesteps or DEFAULT_TIMESTEPS[steps]))
    opts = BuildOptions(backend=backend, precision=precision, tile=TILE, batch=BATCH, output=folder, **options)
    return build_bundle(source, opts, report=_quiet)


def _dims(source, batch: int, tile: int = TILE):
    return source.plan_build(tile, batch, _quiet).dims(batch)


@pytest.fixture(scope="module")
def bundles(source, tmp_path_factory):
    """One bundle per step count 1..5; the ONNX export is done once and reused from the cache."""
    root = tmp_path_factory.mktemp("bundles")
    return {steps: _build(source, root / f"s{steps}", steps) for steps in range(1, 6)}


def _reference(source, bundle: Path) -> InvSRReference:
    from sr_export.families.invsr.schedule import build_schedule

    cli = Upscaler.from_bundle(bundle).manifest.section.groups[0].cli_timesteps
    return InvSRReference(source.components, build_schedule(source.components.scheduler_config, cli))


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5])
@pytest.mark.slow
def test_bundle_matches_the_reference_on_a_tiled_image(source, bundles, steps):
    image = make_image(45, 70, seed=steps)  # > tile: padded to multiples of 16, 32-px tiles at stride 16
    upscaler = Upscaler.from_bundle(bundles[steps])
    got = upscaler.upscale(image)
    expected = _reference(source, bundles[steps]).upscale(image, UpscaleSettings(tile=TILE, batch=BATCH))
    assert got.shape == expected.shape == (180, 280, 3)
    assert psnr(got, expected) >= MIN_PSNR
    assert upscaler.manifest.section.groups[0].timesteps == [t - 1.0 for t in DEFAULT_TIMESTEPS[steps]]


@pytest.mark.slow
def test_a_bundle_with_every_3x3_convolution_as_winograd_matches_the_reference(source, tmp_path, monkeypatch):
    # The tiny networks are far below the widths and sizes where Winograd pays; the same rewrite, forced.
    monkeypatch.setattr(cpu_convolutions, "WINOGRAD_MIN_CHANNELS", 1)
    monkeypatch.setattr(cpu_convolutions, "WINOGRAD_MIN_PIXELS", 1)
    bundle = _build(source, tmp_path / "winograd", 1)
    upscaler = Upscaler.from_bundle(bundle)
    assert all("as Winograd F(4x4, 3x3)" in g.rewrites for g in upscaler.manifest.graphs.values())
    image = make_image(45, 70, seed=1)
    expected = _reference(source, bundle).upscale(image, UpscaleSettings(tile=TILE, batch=BATCH))
    assert psnr(upscaler.upscale(image), expected) >= MIN_PSNR


@pytest.mark.slow
def test_cli_build_with_and_without_winograd(tiny_checkpoints, tmp_path, monkeypatch):
    monkeypatch.setattr(cpu_convolutions, "WINOGRAD_MIN_CHANNELS", 1)
    monkeypatch.setattr(cpu_convolutions, "WINOGRAD_MIN_PIXELS", 1)
    sd, pth, yaml = tiny_checkpoints
    checkpoints = ["--sd-turbo", str(sd), "--noise-predictor", str(pth), "--noise-predictor-config", str(yaml)]
    for flags, winograd in (([], True), (["--no-winograd"], False)):
        bundle = tmp_path / ("direct" if flags else "winograd")
        result = CliRunner().invoke(main, ["build", "--backend", "onnxruntime-cpu", "--tile", str(TILE), *checkpoints,
                                           *flags, "-o", str(bundle)])
        assert result.exit_code == 0, result.output
        rewrites = [g.rewrites for g in Upscaler.from_bundle(bundle).manifest.graphs.values()]
        assert any("Winograd" in r for r in rewrites) == winograd, rewrites
        shown = CliRunner().invoke(main, ["inspect", str(bundle)]).output
        assert ("as Winograd F(4x4, 3x3)" in shown) == winograd and "upsampling convolution(s) as 4 phases" in shown
    # The CUDA builder's GroupNorm option is not the CPU's: refused in one line, before any work.
    result = CliRunner().invoke(main, ["build", "--backend", "onnxruntime-cpu", *checkpoints, "--no-fused-group-norm",
                                       "-o", str(tmp_path / "refused")])
    assert result.exit_code == 1 and result.output.strip() == (
        "error: --fused-group-norm: ONNX Runtime CUDA options; --backend onnxruntime-cpu does not take them")
    assert not (tmp_path / "refused").exists()


@pytest.mark.parametrize("color_fix", [None, "wavelet", "ycbcr"])
def test_bundle_matches_the_reference_on_a_padded_image_with_noise(source, bundles, color_fix):
    image = make_image(20, 27, seed=11)  # < tile: centred reflect padding, one call
    got = Upscaler.from_bundle(bundles[2]).upscale(image, color_fix=color_fix, seed=4)
    settings = UpscaleSettings(tile=TILE, batch=BATCH, color_fix=color_fix, seed=4)
    expected = _reference(source, bundles[2]).upscale(image, settings)
    unseeded = _reference(source, bundles[2]).upscale(image, UpscaleSettings(tile=TILE, batch=BATCH, color_fix=color_fix))
    assert got.shape == (80, 108, 3)
    assert psnr(got, expected) >= MIN_PSNR
    assert psnr(expected, unseeded) < MIN_PSNR  # the seed changes the output more than the bound allows


def test_user_timesteps(source, tmp_path):
    bundle = _build(source, tmp_path / "custom", 2, timesteps=(120, 400))
    manifest = Upscaler.from_bundle(bundle).manifest
    assert manifest.section.groups[0].cli_timesteps == [400, 120]
    image = make_image(30, 30, seed=2)
    expected = _reference(source, bundle).upscale(image, UpscaleSettings(tile=TILE, batch=BATCH))
    assert psnr(Upscaler.from_bundle(bundle).upscale(image), expected) >= MIN_PSNR


# fp16 weights and activations (norms and σ arithmetic in fp32) against the fp32 module: the
# bound is what fp16 rounding of a tiny random-weight network costs, far below a real error.
FP16_MAX_ABS = {"vae_encoder": 0.02, "noise_predictor": 0.02, "unet_step": 0.02, "vae_decoder": 0.01}


@pytest.mark.parametrize("spec", GRAPHS, ids=lambda s: s.name)
@pytest.mark.slow
def test_each_fp16_graph_is_close_to_its_fp32_module(source, tmp_path, spec):
    bundle = _build(source, tmp_path / "fp16", 1, precision=Precision.FP16)
    manifest = json.loads((bundle / MANIFEST_NAME).read_text())
    graph = manifest["graphs"][spec.name]
    assert all(t["dtype"] == ("float32" if t["shape"] == [1] else "float16") for t in graph["inputs"])
    session = ort.InferenceSession(str(bundle / graph["file"]), providers=["CPUExecutionProvider"])
    inputs = spec.sample_inputs(_dims(source, 2), Precision.FP32, seed=3)
    with torch.no_grad():
        expected = module_for_precision(spec, source.components, Precision.FP32)(*inputs).numpy()
    feed = {t.name: x.to(torch_dtype(t, Precision.FP16)).numpy() for t, x in zip(spec.inputs, inputs, strict=True)}
    (got,) = session.run(None, feed)
    assert got.dtype == np.float16 and np.isfinite(got).all()
    assert np.abs(got.astype(np.float32) - expected).max() <= FP16_MAX_ABS[spec.name]


@pytest.mark.parametrize("spec", GRAPHS, ids=lambda s: s.name)
def test_each_fp32_graph_matches_its_module_at_another_batch(source, bundles, spec):
    """Graphs are traced at batch 1: batch and tile axes must really be dynamic."""
    manifest = json.loads((bundles[1] / MANIFEST_NAME).read_text())
    session = ort.InferenceSession(str(bundles[1] / manifest["graphs"][spec.name]["file"]), providers=["CPUExecutionProvider"])
    inputs = spec.sample_inputs(_dims(source, 3, tile=16), Precision.FP32, seed=5)
    with torch.no_grad():
        expected = module_for_precision(spec, source.components, Precision.FP32)(*inputs).numpy()
    (got,) = session.run(None, {t.name: x.numpy() for t, x in zip(spec.inputs, inputs, strict=True)})
    assert np.abs(got - expected).max() <= 1e-4 * max(1.0, float(np.abs(expected).max()))


def test_the_onnx_export_is_cached_by_weights(source, tmp_path):
    messages = []
    opts = BuildOptions(backend="onnxruntime-cpu", tile=TILE, batch=BATCH, output=tmp_path / "again")
    build_bundle(source, opts, report=messages.append)
    assert any("reusing the cached ONNX" in m for m in messages)
    assert not any("exporting" in m for m in messages)


def test_manifest_records_every_constant(source, bundles):
    m = Upscaler.from_bundle(bundles[3]).manifest
    assert m.backend == "onnxruntime-cpu" and m.precision is Precision.FP32 and m.demo is False
    assert m.section.groups[0].sigmas == pytest.approx([0.569285, 0.341674, 0.223004, 0.0], abs=2e-6)
    assert m.section.latent_scale == pytest.approx(source.components.latent_scale)
    assert (m.section.geometry.vae_factor, m.section.geometry.pad_multiple) == (8, 16)  # from the configs
    assert set(m.checkpoints) == {"sd_turbo", "noise_predictor"}
    assert all(len(sha) == 64 for ck in m.checkpoints.values() for sha in ck.sha256.values())
    assert [name for name in m.graphs] == [s.name for s in GRAPHS]


def test_inspect_and_verify(bundles):
    result = CliRunner().invoke(main, ["inspect", str(bundles[2]), "--verify"])
    assert result.exit_code == 0, result.output
    assert "unet_step" in result.output and "all engine files match" in result.output


def test_a_bundle_from_another_tool_version_is_refused_by_the_cli(tmp_path, bundles):
    import shutil

    bundle = Path(shutil.copytree(bundles[1], tmp_path / "old"))
    edit_manifest(bundle, lambda data: data.update(tool_version="0.0.1"))
    (tmp_path / "in.png").write_bytes((Path(__file__).parents[1] / "examples" / "lr.png").read_bytes())
    result = CliRunner().invoke(main, ["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "o.png"),
                                       "-e", str(bundle)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("error: ") and "0.0.1" in result.output
    assert "Traceback" not in result.output


def test_bad_build_options_fail_before_any_work(tmp_path):
    runner = CliRunner()
    for args, words, code in ((["--steps", "0"], "at least 1", 1), (["--steps", "2", "--timesteps", "300"], "--steps is 2", 1),
                              (["--tile", "0"], "--tile", 2), (["--tile", "300"], "tile 300", 1),
                              (["--backend", "onnxruntime-cpu", "--precision", "bf16"], "builds fp32 or fp16, not bf16", 1)):
        result = runner.invoke(main, ["build", *args, "-o", str(tmp_path / "b")])
        assert result.exit_code == code and words in result.output, result.output
        assert "loading" not in result.output, result.output
        assert not (tmp_path / "b").exists()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from sr_export.cli import main; main()", *args]


@pytest.mark.slow
def test_a_killed_build_leaves_no_bundle_and_a_rerun_succeeds(tiny_checkpoints, tmp_path):
    sd, pth, yaml = tiny_checkpoints
    env = {**os.environ, "SR_EXPORT_CACHE": str(tmp_path / "cache")}  # a cold cache: the export runs
    final = tmp_path / "engines" / "killed"
    args = ["build", "--steps", "1", "--tile", "16", "--sd-turbo", str(sd), "--noise-predictor", str(pth),
            "--noise-predictor-config", str(yaml), "--backend", "onnxruntime-cpu", "-o", str(final)]
    proc = subprocess.Popen(_cli(*args), stderr=subprocess.PIPE, text=True, env=env,
                            cwd=tmp_path)
    for line in proc.stderr:  # kill it in the middle of the export
        if "[2/4] exporting" in line:
            time.sleep(0.5)
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not final.exists()
    with pytest.raises(SRError, match="does not exist"):
        Upscaler.from_bundle(final)
    rerun = subprocess.run(_cli(*args), capture_output=True, text=True, env=env, cwd=tmp_path,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert Upscaler.from_bundle(final).manifest.pipeline.tile == 16
    leftovers = [p.name for p in final.parent.iterdir() if p != final]
    assert leftovers == []  # the stale partial folder of the killed run is gone


@pytest.mark.slow
def test_the_demo_default_end_to_end(tmp_path, monkeypatch):
    """The README's main command: no checkpoints anywhere -> the demo model, built and used."""
    for name in ("SR_EXPORT_SD_TURBO", "SR_EXPORT_NOISE_PREDICTOR", "HF_HUB_CACHE", "HF_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(main, ["build", "--steps", "1"])
    assert result.exit_code == 0, result.output
    bundle = Path("engines/invsr-demo-s1-onnxruntime-cpu-fp32")
    assert "DEMO" in result.output and (bundle / MANIFEST_NAME).is_file()
    from sr_runtime.images import read_image, write_image

    write_image(tmp_path / "lr.png", make_image(48, 64, seed=9))
    result = runner.invoke(main, ["upscale", "lr.png", "-o", "sr.png", "-e", str(bundle)])
    assert result.exit_code == 0, result.output
    assert read_image(tmp_path / "sr.png").pixels.shape == (192, 256, 3)
    assert Upscaler.from_bundle(bundle).demo


def test_onnxruntime_bundles_run_attention_as_one_fused_node(bundles):
    """No score matrix in the graphs: every attention is ONNX Runtime's MultiHeadAttention."""
    import onnx

    ops = []
    for spec in GRAPHS:
        graph = onnx.load(str(bundles[1] / f"{spec.name}.onnx"), load_external_data=False).graph
        ops += [n.op_type for n in graph.node]
    assert ops.count("MultiHeadAttention") > 0 and "Softmax" not in ops


def test_the_plain_attention_export_for_tensorrt(source, tmp_path):
    import onnx

    from sr_export.attention import Attention
    from sr_export.builders.backends import BACKENDS
    from sr_export.families.invsr.graphs import NOISE_PREDICTOR
    from sr_export.onnx_export import export_graph

    assert BACKENDS["tensorrt"].attention is Attention.PLAIN and BACKENDS["onnxruntime-cuda"].attention is Attention.FUSED
    path = export_graph(NOISE_PREDICTOR, source.components, Precision.FP32, tmp_path / "np.onnx", _dims(source, 1),
                        attention=Attention.PLAIN)
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert "Softmax" in ops and "MultiHeadAttention" not in ops


# OpenVINO against PyTorch fp32 on InvSR-3, measured on an AVX-512 BF16 CPU: fp32 128.5 dB (kernel rounding
# only), bf16 51.1 dB (products rounded to 8 significant bits through three networks). The fp32 bound is far
# above what bf16 arithmetic gives, so an fp32 bundle that OpenVINO ran in bf16 (its default on such CPUs)
# fails it; where the CPU has no bf16 instructions OpenVINO runs the bf16 bundle in fp32 too.
OPENVINO_FP32_MIN_PSNR = 90.0
OPENVINO_BF16_MIN_PSNR = 40.0


@needs_openvino
@pytest.mark.slow
def test_openvino_bundles_match_the_reference_in_fp32_and_bf16(source, tmp_path):
    from sr_runtime.backends.openvino import computes_bf16

    image = make_image(45, 70, seed=7)
    got = {}
    for precision in (Precision.FP32, Precision.BF16):
        bundle = _build(source, tmp_path / precision.value, 3, precision=precision, backend="openvino-cpu")
        expected = _reference(source, bundle).upscale(image, UpscaleSettings(tile=TILE, batch=BATCH, seed=2))
        got[precision] = psnr(Upscaler.from_bundle(bundle).upscale(image, seed=2), expected)
    print("InvSR-3 openvino-cpu vs PyTorch fp32: " + ", ".join(f"{p.value} {v:.1f} dB" for p, v in got.items()))
    assert got[Precision.FP32] >= OPENVINO_FP32_MIN_PSNR
    if computes_bf16():
        assert OPENVINO_BF16_MIN_PSNR <= got[Precision.BF16] < OPENVINO_FP32_MIN_PSNR
    else:
        assert got[Precision.BF16] >= OPENVINO_FP32_MIN_PSNR


# ONNX Runtime CUDA against PyTorch on the same GPU at the same precision: kernel choices and rounding differ
# (TF32 convolutions in fp32; fp16 roundings through three networks and the UNet steps in fp16). Measured
# on an H200: 64.9 dB in fp32, 56.1 dB in fp16 (65.0 / 53.8 dB with GroupNorm unfused).
CUDA_MIN_PSNR = {Precision.FP32: 50.0, Precision.FP16: 45.0}


@needs_cuda_ep
@pytest.mark.parametrize("precision", [Precision.FP32, Precision.FP16], ids=lambda p: p.value)
def test_a_cuda_bundle_matches_the_reference_on_the_gpu(source, tmp_path, precision):
    bundle = _build(source, tmp_path / "cuda", 3, precision=precision, backend="onnxruntime-cuda")
    unfused = _build(source, tmp_path / "unfused", 3, precision=precision, backend="onnxruntime-cuda",
                     fused_group_norm=False)
    assert "GroupNorm(s) fused" in Upscaler.from_bundle(bundle).manifest.graphs["vae_decoder"].rewrites
    image = make_image(45, 70, seed=7)
    settings = UpscaleSettings(tile=TILE, batch=BATCH)
    cli = Upscaler.from_bundle(bundle).manifest.section.groups[0].cli_timesteps
    # A copy: the reference moves its modules to the GPU, and the module's other tests run on the CPU.
    components = copy.deepcopy(source.components)
    expected = InvSRReference(components, build_schedule(components.scheduler_config, cli), device="cuda",
                              dtype=TORCH_DTYPES[precision]).upscale(image, settings)
    plain = Upscaler.from_bundle(bundle).upscale(image)
    replayed = Upscaler.from_bundle(bundle, options=RuntimeOptions(cuda_graph=True)).upscale(image)
    got = {"GroupNorm fused": psnr(plain, expected)}
    for label, folder, options in (("NHWC kernels", bundle, RuntimeOptions(prefer_nhwc=True)),
                                   ("GroupNorm unfused", unfused, RuntimeOptions()),
                                   ("GroupNorm unfused, NHWC", unfused, RuntimeOptions(prefer_nhwc=True))):
        got[label] = psnr(Upscaler.from_bundle(folder, options=options).upscale(image), expected)
    print(f"InvSR-3 onnxruntime-cuda {precision.value} vs PyTorch on the GPU: "
          + ", ".join(f"{label} {value:.1f} dB" for label, value in got.items())
          + f"; CUDA graphs vs plain: max |diff| {np.abs(replayed - plain).max():.2e}")
    assert min(got.values()) >= CUDA_MIN_PSNR[precision], got
    # The captured graphs run the last batch padded to the full batch, and the fused GroupNorm adds its sums
    # with atomics: replay and plain run differ slightly (H200: 3.9e-3 fp32, 1.7e-2 fp16 max-abs).
    assert psnr(replayed, plain) >= CUDA_MIN_PSNR[precision]
