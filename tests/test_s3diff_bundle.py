"""S3Diff bundles of the built-in demo model (one build per module): the graphs against their torch modules, the
bundle against the PyTorch reference (untiled and through every official tiling), fp16 graphs, the CLI."""

from __future__ import annotations

import copy

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from helpers import assert_graphs_match_modules, make_image, needs_cuda_ep, needs_openvino

from sr_export.cli import main
from sr_export.families.s3diff import graphs as specs
from sr_export.families.s3diff.components import load_components
from sr_export.families.s3diff.reference import S3DiffReference
from sr_export.families.s3diff.source import demo_checkpoints
from sr_export.metrics import psnr
from sr_export.onnx_export import export_graph
from sr_runtime.families.s3diff.graphs import dims
from sr_runtime.families.s3diff.options import S3DiffOptions
from sr_runtime.images import write_image
from sr_runtime.pipeline import Upscaler
from sr_runtime.precision import Precision

TILE = 16
ALL_TILINGS = dict(latent_tile=8, latent_overlap=2, vae_encoder_tile=64, vae_decoder_tile=8)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """(the demo bundle, the reference of the same checkpoints, their paths), built with the tests' isolated cache."""
    bundle = tmp_path_factory.mktemp("s3diff-bundle") / "demo"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SR_EXPORT_CACHE", str(tmp_path_factory.getbasetemp() / "sr-export-cache"))
        result = CliRunner().invoke(main, ["build", "--model", "s3diff", "--backend", "onnxruntime-cpu", "--tile",
                                           str(TILE), "--batch", "2", "-o", str(bundle)])
        assert result.exit_code == 0, result.output
        assert "DEMO model with random weights" in result.output
        paths = demo_checkpoints()
    return bundle, S3DiffReference(load_components(paths.sd_turbo, paths.checkpoint, paths.de_net), batch=2), paths


@pytest.mark.slow
def test_the_bundle_matches_the_reference(demo):
    bundle, reference, _ = demo
    upscaler = Upscaler.from_bundle(bundle)
    for height, width, options in (
        (20, 24, {}),  # one whole chain, wavelet colour fix on 8-bit images
        (40, 36, dict(color_fix="none", seed=3, **ALL_TILINGS)),  # tiled VAE encoder and decoder, latent tiles
    ):
        image = make_image(height, width, seed=height)
        got = upscaler.upscale(image, **options)
        want = reference.upscale(image, S3DiffOptions(**options))
        assert got.shape == (4 * height, 4 * width, 3) and psnr(got, want) >= 45, options


def test_each_graph_matches_its_module(demo):
    bundle, reference, _ = demo
    c = reference.components
    section = reference.section
    sizes = dims(1, TILE, TILE, section, reference.prompt_embeds.shape)
    chosen = [*specs.GRAPHS, *(s for s in specs.segment_specs(section) if s.name.endswith(("segment0", "segment1",
                                                                                          "segment13")))]
    assert_graphs_match_modules(bundle, chosen, c, sizes)


@pytest.mark.slow
def test_fp16_graphs_are_finite(demo, tmp_path):
    _, reference, _ = demo
    section = reference.section
    sizes = dims(1, TILE, TILE, section, reference.prompt_embeds.shape)
    for spec in (specs.DEGRADATION, specs.UNET, specs.segment_specs(section)[1]):  # fp32 scores; LoRA; statistics
        path = export_graph(spec, reference.components, Precision.FP16, tmp_path / f"{spec.name}.onnx", sizes)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feed = {t.name: x.numpy() for t, x in zip(spec.inputs, spec.sample_inputs(sizes, Precision.FP16), strict=True)}
        (out,) = session.run(None, feed)
        assert out.dtype == (np.float32 if spec.name == "degradation" else np.float16) and np.isfinite(out).all(), spec.name


# ONNX Runtime CUDA bundles against the fp32 reference on the same GPU. Bounds from the CPU, where this test's
# image through every tiling gives 87.0 dB with an fp32 bundle and 53.5 dB with an fp16 one: 40 / 30 dB leave
# TF32 and the GPU's own fp16 kernels room. On an H200: 57.2 and 57.0 dB fp32 (two runs), 51.5 dB fp16.
CUDA_MIN_PSNR = {Precision.FP32: 40.0, Precision.FP16: 30.0}


@needs_cuda_ep
@pytest.mark.parametrize("precision", [Precision.FP32, Precision.FP16], ids=lambda p: p.value)
def test_a_cuda_bundle_matches_the_reference_on_the_gpu(demo, tmp_path, precision):
    _, reference, _ = demo
    bundle = tmp_path / "cuda"
    result = CliRunner().invoke(main, ["build", "--model", "s3diff", "--backend", "onnxruntime-cuda", "--precision",
                                       precision.value, "--tile", str(TILE), "--batch", "2", "-o", str(bundle)])
    assert result.exit_code == 0, result.output
    # A copy: the reference moves its modules to the GPU, and the module's other tests run on the CPU.
    on_gpu = S3DiffReference(copy.deepcopy(reference.components), device="cuda", batch=2)
    image = make_image(40, 36, seed=4)
    want = on_gpu.upscale(image, S3DiffOptions(**ALL_TILINGS))
    got = Upscaler.from_bundle(bundle).upscale(image, **ALL_TILINGS)
    print(f"S3Diff onnxruntime-cuda {precision.value} vs PyTorch fp32 on the GPU: {psnr(got, want):.1f} dB")
    assert psnr(got, want) >= CUDA_MIN_PSNR[precision]


# OpenVINO against PyTorch fp32 on this test's image through every tiling, measured on an AVX-512 BF16 CPU:
# fp32 85.1 dB, bf16 33.4 dB (fp16 on ONNX Runtime: 53.5 dB, as it keeps norms and scores in fp32).
OPENVINO_MIN_PSNR = {Precision.FP32: 45.0, Precision.BF16: 28.0}


@needs_openvino
@pytest.mark.slow
def test_openvino_bundles_match_the_reference_in_fp32_and_bf16(demo, tmp_path):
    from sr_runtime.backends.openvino import computes_bf16

    _, reference, _ = demo
    image = make_image(40, 36, seed=4)
    want = reference.upscale(image, S3DiffOptions(**ALL_TILINGS))
    got = {}
    for precision in (Precision.FP32, Precision.BF16):
        bundle = tmp_path / precision.value
        result = CliRunner().invoke(main, ["build", "--model", "s3diff", "--backend", "openvino-cpu", "--precision",
                                           precision.value, "--tile", str(TILE), "--batch", "2", "-o", str(bundle)])
        assert result.exit_code == 0, result.output
        got[precision] = psnr(Upscaler.from_bundle(bundle).upscale(image, **ALL_TILINGS), want)
    print("S3Diff openvino-cpu vs PyTorch fp32: " + ", ".join(f"{p.value} {v:.1f} dB" for p, v in got.items()))
    assert got[Precision.FP32] >= OPENVINO_MIN_PSNR[Precision.FP32]
    assert got[Precision.BF16] >= OPENVINO_MIN_PSNR[Precision.BF16 if computes_bf16() else Precision.FP32]


@pytest.mark.slow
def test_the_cli_runs_the_bundle_and_the_reference_alike(demo, tmp_path):
    bundle, _, paths = demo
    lr = tmp_path / "lr.png"
    write_image(lr, make_image(20, 28, seed=5))
    runner = CliRunner()
    result = runner.invoke(main, ["upscale", str(lr), "-o", str(tmp_path / "bundle.npy"), "-e", str(bundle)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["upscale", str(lr), "-o", str(tmp_path / "reference.npy"), "--backend", "torch",
                                  "--model", "s3diff", "--sd-turbo", str(paths.sd_turbo), "--checkpoint",
                                  str(paths.checkpoint), "--de-net", str(paths.de_net)])
    assert result.exit_code == 0, result.output
    assert psnr(np.load(tmp_path / "bundle.npy"), np.load(tmp_path / "reference.npy")) >= 45
    result = runner.invoke(main, ["upscale", str(lr), "-o", str(tmp_path / "x.png"), "-e", str(bundle), "--color-fix",
                                  "ycbcr"])
    assert result.exit_code == 1 and "adain" in result.output and "Traceback" not in result.output
    result = runner.invoke(main, ["inspect", str(bundle)])
    assert result.exit_code == 0 and "DEMO" in result.output and "guidance    1.07" in result.output


def test_vae_encoder_tiles_the_vae_cannot_split_are_refused_before_any_image(demo, tmp_path):
    bundle, _, _ = demo
    write_image(tmp_path / "in.png", make_image(40, 36))
    result = CliRunner().invoke(main, ["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "o.png"), "-e",
                                       str(bundle), "--vae-encoder-tile", "60"])
    assert result.exit_code == 1 and "VAE encoder tile 60 must be a multiple of the VAE's factor" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "o.png").exists()
