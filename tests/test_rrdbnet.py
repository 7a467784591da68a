"""The RRDBNet family (Real-ESRGAN, BSRGAN): network, loaders, ONNX export, bundles, tiling and CLI.

Bundles here come from small random-weight RRDBNets saved in the release file formats and read by the
real loaders; the reference for every engine result is the PyTorch module run on the whole image.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from helpers import (
    edit_manifest,
    make_image,
    needs_cuda_ep,
    needs_isa_mask,
    needs_openvino,
    run_as_avx2_only,
)
from PIL import Image

from sr_export.bench.bundles import cached_bundle
from sr_export.builders.backends import BACKENDS
from sr_export.builders.bundle_builder import BuildOptions, build_bundle
from sr_export.builders.onnx_cache import FP16_CHECK
from sr_export.cli import main
from sr_export.families.base import DEFAULT_TILE
from sr_export.families.rrdbnet import CPU_TILE, RRDBNetExport
from sr_export.families.rrdbnet.graphs import RRDBNET
from sr_export.families.rrdbnet.layouts import BSRGAN, REALESRGAN
from sr_export.families.rrdbnet.model import (
    TINY_CONFIG,
    RRDBConfig,
    RRDBNet,
    load_rrdbnet,
    save_checkpoint,
    to_layout,
    write_random_rrdbnet,
)
from sr_export.families.rrdbnet.source import resolve_rrdbnet_source
from sr_export.metrics import psnr
from sr_export.onnx_export import export_graph
from sr_runtime.backends.base import RuntimeOptions
from sr_runtime.bundle_manifest import read_manifest
from sr_runtime.cpu_target import this_cpu
from sr_runtime.crop_tiling import keep_ranges, plan_crop_tiles, upscale_tiled
from sr_runtime.errors import SRError
from sr_runtime.families.rrdbnet.graphs import dims
from sr_runtime.images import read_image
from sr_runtime.manifest import MANIFEST_NAME
from sr_runtime.pipeline import Upscaler
from sr_runtime.precision import Precision
from sr_runtime.version import TOOL_VERSION

# One RRDB: 17 LR-resolution 3x3 convs (conv_first, 15 dense convs, conv_body) reach 17 LR px; conv_up1
# (at 2x), conv_up2, conv_hr and conv_last (at 4x) add 1 + 3 px at their resolutions, and the two
# nearest-neighbour steps round that up to 2 LR px: an output pixel depends on LR pixels within 19 px.
TEST_CONFIG = RRDBConfig(num_feat=8, num_block=1, num_grow_ch=4)
RECEPTIVE_RADIUS = 19
TILE, BATCH = 64, 4
# ONNX Runtime vs PyTorch, both fp32, on outputs of size ~1: kernel summation order only.
FP32_ATOL = 1e-5
# fp16 engine (fp16 weights and activations, fp32 accumulation) vs the fp32 module, outputs in [0, 1]:
# a few fp16 roundings (eps 2^-11 ~ 4.9e-4) of values below 1.
FP16_ATOL = 5e-3
# OpenVINO bf16 (bfloat16 products, eps 2^-8 ~ 3.9e-3) vs the fp32 module: 6.2e-3 measured on an AVX-512
# BF16 CPU; an fp32 bundle run in bf16 (OpenVINO's default there) would fail FP32_ATOL.
OPENVINO_BF16_ATOL = 2e-2
MIN_PSNR = 45.0


def _quiet(_message: str) -> None:
    pass


def make_test_model(config: RRDBConfig = TEST_CONFIG, seed: int = 3) -> RRDBNet:
    """Random weights reshaped for the tests: a trunk strong enough that far pixels matter (at the default
    initialisation they fade below fp32 rounding within a few px, so no seam could show) and outputs
    spread over [0, 1] instead of hugging 0."""
    torch.manual_seed(seed)
    model = RRDBNet(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("body.") and name.endswith("weight"):
                p.mul_(3.0)
        model.conv_last.weight.mul_(10.0)
        model.conv_last.bias.fill_(0.5)
    return model


def torch_sr(model: RRDBNet, image: np.ndarray, clamp: bool = True) -> np.ndarray:
    """(H,W,3) -> (4H,4W,3): the module on the whole image, the oracle for every tiled result."""
    with torch.no_grad():
        out = model(torch.from_numpy(image.transpose(2, 0, 1).copy())[None])[0].numpy().transpose(1, 2, 0)
    return np.clip(out, 0, 1) if clamp else out


def build(tmp_path: Path, checkpoint: Path, name: str = "bundle", precision: Precision = Precision.FP32,
          overlap: int = RECEPTIVE_RADIUS, layout: str = REALESRGAN, tile: int = TILE, batch: int = BATCH,
          backend: str = "onnxruntime-cpu") -> Path:
    source = resolve_rrdbnet_source(layout, checkpoint, overlap, report=_quiet)
    opts = BuildOptions(backend=backend, precision=precision, tile=tile, batch=batch, output=tmp_path / name)
    return build_bundle(source, opts, report=_quiet)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SR_EXPORT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def test_model() -> RRDBNet:
    return make_test_model()


@pytest.fixture
def checkpoint(tmp_path, test_model) -> Path:
    return save_checkpoint(test_model, tmp_path / "RealESRGAN_x4plus.pth", REALESRGAN, "params_ema")


# ---- the network ----------------------------------------------------------------------------------

def _official_keys(trunk: str, rdb: str, names: dict[str, str]) -> list[str]:
    """The release's state-dict keys, written out from BasicSR's RRDBNet (RealESRGAN_x4plus.pth)."""
    convs = [f"{trunk}.{b}.{rdb}{k}.conv{c}" for b in range(23) for k in (1, 2, 3) for c in range(1, 6)]
    modules = ["conv_first", *convs, names["body"], names["up1"], names["up2"], names["hr"], "conv_last"]
    return [f"{m}.{p}" for m in modules for p in ("weight", "bias")]


def test_official_parameter_count_and_key_names():
    model = RRDBNet()
    assert sum(p.numel() for p in model.parameters()) == 16_697_987
    realesrgan = _official_keys("body", "rdb", {"body": "conv_body", "up1": "conv_up1", "up2": "conv_up2",
                                                "hr": "conv_hr"})
    assert list(model.state_dict()) == realesrgan and len(realesrgan) == 702
    bsrgan = _official_keys("RRDB_trunk", "RDB", {"body": "trunk_conv", "up1": "upconv1", "up2": "upconv2",
                                                  "hr": "HRconv"})
    assert [to_layout(k, BSRGAN) for k in model.state_dict()] == bsrgan
    shapes = model.state_dict()
    assert shapes["conv_first.weight"].shape == (64, 3, 3, 3)
    assert shapes["body.0.rdb1.conv1.weight"].shape == (32, 64, 3, 3)
    assert shapes["body.0.rdb1.conv5.weight"].shape == (64, 64 + 4 * 32, 3, 3)
    assert shapes["conv_last.weight"].shape == (3, 64, 3, 3)


def _official_forward(sd: dict[str, torch.Tensor], x: torch.Tensor, num_block: int) -> torch.Tensor:
    """The official forward written out with functional ops over the state dict (BasicSR's RRDBNet)."""
    def conv(name, t):
        return F.conv2d(t, sd[f"{name}.weight"], sd[f"{name}.bias"], padding=1)

    def lrelu(t):
        return F.leaky_relu(t, 0.2)

    def rdb(prefix, t):
        x1 = lrelu(conv(f"{prefix}.conv1", t))
        x2 = lrelu(conv(f"{prefix}.conv2", torch.cat((t, x1), 1)))
        x3 = lrelu(conv(f"{prefix}.conv3", torch.cat((t, x1, x2), 1)))
        x4 = lrelu(conv(f"{prefix}.conv4", torch.cat((t, x1, x2, x3), 1)))
        return conv(f"{prefix}.conv5", torch.cat((t, x1, x2, x3, x4), 1)) * 0.2 + t

    feat = conv("conv_first", x)
    body = feat
    for b in range(num_block):
        body = rdb(f"body.{b}.rdb3", rdb(f"body.{b}.rdb2", rdb(f"body.{b}.rdb1", body))) * 0.2 + body
    feat = feat + conv("conv_body", body)
    feat = lrelu(conv("conv_up1", F.interpolate(feat, scale_factor=2, mode="nearest")))
    feat = lrelu(conv("conv_up2", F.interpolate(feat, scale_factor=2, mode="nearest")))
    return conv("conv_last", lrelu(conv("conv_hr", feat)))


def test_forward_matches_the_official_computation():
    model = make_test_model(RRDBConfig(num_feat=8, num_block=2, num_grow_ch=4))
    x = torch.rand(2, 3, 9, 13)
    with torch.no_grad():
        ours, official = model(x), _official_forward(model.state_dict(), x, 2)
    assert ours.shape == (2, 3, 36, 52)
    torch.testing.assert_close(ours, official, rtol=0, atol=1e-6)


# ---- loaders --------------------------------------------------------------------------------------

def _same_weights(a: RRDBNet, b: RRDBNet) -> bool:
    return all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())


@pytest.mark.parametrize("wrapper", ["params_ema", "params", None])
def test_realesrgan_loader_unwraps_and_infers_the_config(tmp_path, wrapper):
    config = RRDBConfig(num_feat=12, num_block=3, num_grow_ch=6)
    path = write_random_rrdbnet(tmp_path / "RealESRGAN_x4plus.pth", REALESRGAN, seed=1, wrapper=wrapper, config=config)
    loaded = load_rrdbnet(path, REALESRGAN)
    torch.manual_seed(1)
    assert loaded.config == config and _same_weights(loaded, RRDBNet(config))


def test_realesrgan_loader_prefers_params_ema(tmp_path):
    ema, raw = make_test_model(seed=1), make_test_model(seed=2)
    state = {"params": raw.state_dict(), "params_ema": ema.state_dict()}
    torch.save(state, tmp_path / "both.pth")
    assert _same_weights(load_rrdbnet(tmp_path / "both.pth", REALESRGAN), ema)


def test_bsrgan_loader_renames_the_esrgan_keys(tmp_path, test_model):
    path = save_checkpoint(test_model, tmp_path / "BSRGAN.pth", BSRGAN)
    stored = torch.load(path, weights_only=True)
    assert "RRDB_trunk.0.RDB1.conv1.weight" in stored and "HRconv.bias" in stored and "body.0.rdb1.conv1.weight" not in stored
    loaded = load_rrdbnet(path, BSRGAN)
    assert loaded.config == TEST_CONFIG and _same_weights(loaded, test_model)


def test_random_writer_default_is_the_tiny_config(tmp_path):
    assert load_rrdbnet(write_random_rrdbnet(tmp_path / "t.pth"), REALESRGAN).config == TINY_CONFIG


def test_loader_casts_fp16_checkpoints_to_fp32(tmp_path, test_model):
    path = tmp_path / "half.pth"
    torch.save({"params_ema": {k: v.half() for k, v in test_model.state_dict().items()}}, path)
    loaded = load_rrdbnet(path, REALESRGAN)
    assert loaded.conv_first.weight.dtype == torch.float32
    torch.testing.assert_close(loaded.conv_first.weight, test_model.conv_first.weight.half().float())


def _error(path: Path, layout: str) -> str:
    with pytest.raises(SRError) as err:
        load_rrdbnet(path, layout)
    assert "\n" not in str(err.value)
    return str(err.value)


def _edited(tmp_path: Path, model: RRDBNet, layout: str, edit) -> Path:
    state = {to_layout(k, layout): v for k, v in model.state_dict().items()}
    edit(state)
    torch.save(state, tmp_path / "edited.pth")
    return tmp_path / "edited.pth"


@pytest.mark.parametrize("layout", [REALESRGAN, BSRGAN])
def test_loader_names_missing_and_unexpected_keys(tmp_path, test_model, layout):
    missing = to_layout("body.0.rdb2.conv3.bias", layout)
    message = _error(_edited(tmp_path, test_model, layout, lambda s: s.pop(missing)), layout)
    assert f"missing 1 keys ({missing})" in message
    extra = to_layout("conv_hr.extra", layout)
    message = _error(_edited(tmp_path, test_model, layout, lambda s: s.update({extra: torch.zeros(1)})), layout)
    assert f"unexpected 1 keys ({extra})" in message


def test_loader_names_a_mis_shaped_tensor(tmp_path, test_model):
    path = _edited(tmp_path, test_model, REALESRGAN, lambda s: s.update({"conv_hr.bias": torch.zeros(5)}))
    assert "conv_hr.bias has shape (5,)" in _error(path, REALESRGAN)


def test_loader_points_at_the_other_layout(tmp_path, test_model):
    bsrgan = save_checkpoint(test_model, tmp_path / "BSRGAN.pth", BSRGAN)
    assert "--model bsrgan" in _error(bsrgan, REALESRGAN)
    realesrgan = save_checkpoint(test_model, tmp_path / "RealESRGAN_x4plus.pth", REALESRGAN, "params_ema")
    assert "--model realesrgan" in _error(realesrgan, BSRGAN)


def test_loader_refuses_x2_models_and_non_rrdbnet_files(tmp_path, test_model):
    x2 = _edited(tmp_path, test_model, REALESRGAN, lambda s: s.update({"conv_first.weight": torch.zeros(8, 12, 3, 3)}))
    assert "pixel-unshuffle" in _error(x2, REALESRGAN)
    torch.save({"params_ema": {"encoder.weight": torch.zeros(1)}}, tmp_path / "other.pth")
    assert "not an RRDBNet checkpoint" in _error(tmp_path / "other.pth", REALESRGAN)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    assert "not a PyTorch checkpoint" in _error(tmp_path / "junk.pth", REALESRGAN)


# ---- ONNX -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("precision", "atol"), [(Precision.FP32, FP32_ATOL), (Precision.FP16, FP16_ATOL)])
def test_onnx_matches_the_module_at_other_sizes(tmp_path, test_model, precision, atol):
    """Traced at 32 x 32, run at another batch and an odd, non-square size: the axes really are dynamic."""
    path = export_graph(RRDBNET, test_model, precision, tmp_path / "rrdbnet.onnx", dims(1, 32, 32))
    lr = torch.rand(3, 3, 21, 17, generator=torch.Generator().manual_seed(0))
    dtype = precision.numpy_dtype
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"lr": lr.numpy().astype(dtype)})[0]
    with torch.no_grad():
        expected = test_model(lr).numpy()
    assert got.dtype == dtype and got.shape == (3, 3, 84, 68)
    np.testing.assert_allclose(got.astype(np.float32), expected, rtol=0, atol=atol)


# ---- bundles --------------------------------------------------------------------------------------

def _interior_fraction(reference: np.ndarray) -> float:
    return float(np.mean((reference > 0) & (reference < 1)))


def test_tiled_bundle_equals_the_module_on_the_whole_image(tmp_path, cache, test_model, checkpoint):
    """101 x 77 LR with 64 px tiles and a 19 px overlap (= the receptive field): 3 x 2 tiles in batches
    of 4 (the last one partial), and every output pixel as in one run on the whole image."""
    upscaler = Upscaler.from_bundle(build(tmp_path, checkpoint))
    image = make_image(101, 77, seed=1)
    progress = []
    got = upscaler.upscale(image, on_tiles_done=lambda done, total: progress.append((done, total)))
    expected = torch_sr(test_model, image)
    assert progress == [(4, 6), (6, 6)]
    assert got.shape == (404, 308, 3) and got.dtype == np.float32
    assert _interior_fraction(expected) > 0.9  # the clamp hides little
    np.testing.assert_allclose(got, expected, rtol=0, atol=FP32_ATOL)
    # The control: without overlap, 128 px split into two 64 px tiles that share no pixel, the tiles'
    # zero-padded borders show at the seam.
    image = make_image(128, 128, seed=1)
    no_overlap = Upscaler.from_bundle(build(tmp_path, checkpoint, name="no-overlap", overlap=0)).upscale(image)
    assert np.abs(no_overlap - torch_sr(test_model, image)).max() > 1e-2


def test_default_overlap_and_fp16_bundle(tmp_path, cache, checkpoint, test_model):
    """Real-ESRGAN's usual 16 px overlap (below this model's 19 px receptive field) in fp16."""
    bundle = build(tmp_path, checkpoint, precision=Precision.FP16, overlap=16)
    manifest = read_manifest(bundle, TOOL_VERSION)
    assert manifest.precision is Precision.FP16 and manifest.precision_fallback is None
    assert manifest.graphs["rrdbnet"].inputs[0].dtype == "float16"
    image = make_image(101, 77, seed=2)
    got, expected = Upscaler.from_bundle(bundle).upscale(image), torch_sr(test_model, image)
    assert psnr(got, expected) >= MIN_PSNR
    np.testing.assert_allclose(got, expected, rtol=0, atol=FP16_ATOL)


# The CUDA provider's fp32 convolutions may use TF32 (10-bit mantissa, like fp16's): fp16's tolerance.
CUDA_ATOL = {Precision.FP32: FP16_ATOL, Precision.FP16: FP16_ATOL}


@needs_cuda_ep
@pytest.mark.parametrize("precision", [Precision.FP32, Precision.FP16], ids=lambda p: p.value)
def test_a_cuda_bundle_equals_the_module_under_each_runtime_option(tmp_path, cache, checkpoint, test_model, precision):
    bundle = build(tmp_path, checkpoint, precision=precision, overlap=16, backend="onnxruntime-cuda")
    image = make_image(101, 77, seed=4)
    expected = torch_sr(test_model, image)
    for options in (RuntimeOptions(prefer_nhwc=True), RuntimeOptions(cuda_graph=True), RuntimeOptions()):
        got = Upscaler.from_bundle(bundle, options=options).upscale(image)
        print(f"RRDBNet onnxruntime-cuda {precision.value}, {options}: "
              f"max |diff| {np.abs(got - expected).max():.2e}")
        np.testing.assert_allclose(got, expected, rtol=0, atol=CUDA_ATOL[precision])
    Image.fromarray((image * 255).round().astype(np.uint8)).save(tmp_path / "in.png")
    result = CliRunner().invoke(main, ["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.npy"),
                                       "-e", str(bundle), "--cuda-graph"])
    assert result.exit_code == 0 and "CUDA graphs" in result.output, result.output
    replayed = Upscaler.from_bundle(bundle, options=RuntimeOptions(cuda_graph=True))
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), replayed.upscale(read_image(tmp_path / "in.png").pixels))


@pytest.mark.parametrize(("height", "width"), [(23, 50), (48, 40), (5, 130)])
def test_images_smaller_than_a_tile_run_at_their_own_size(tmp_path, cache, checkpoint, test_model, height, width):
    """A side shorter than the 64 px tile is run at its own length (the engine's profile takes 1..64 px),
    so every pixel, borders included, equals the whole-image run that Real-ESRGAN and BSRGAN do."""
    upscaler = Upscaler.from_bundle(build(tmp_path, checkpoint))
    profile = upscaler.manifest.graphs["rrdbnet"].profile["lr"]
    assert profile == [[1, 3, 1, 1], [BATCH, 3, TILE, TILE], [BATCH, 3, TILE, TILE]]
    image = make_image(height, width, seed=3)
    got = upscaler.upscale(image)
    assert got.shape == (4 * height, 4 * width, 3)
    np.testing.assert_allclose(got, torch_sr(test_model, image), rtol=0, atol=FP32_ATOL)


def test_bsrgan_bundle(tmp_path, cache, test_model):
    path = save_checkpoint(test_model, tmp_path / "BSRGAN.pth", BSRGAN)
    bundle = build(tmp_path, path, layout=BSRGAN, batch=1)
    manifest = read_manifest(bundle, TOOL_VERSION)
    assert list(manifest.checkpoints) == [BSRGAN] and manifest.pipeline.family == "rrdbnet"
    image = make_image(70, 90, seed=4)  # at least a tile each way: no padding, so exact everywhere
    np.testing.assert_allclose(Upscaler.from_bundle(bundle).upscale(image), torch_sr(test_model, image),
                               rtol=0, atol=FP32_ATOL)


def test_fp16_overflow_falls_back_to_fp32(tmp_path, cache, caplog, monkeypatch):
    """Upsampling convs scaled by 1e4 push the 4x features past fp16's 65504: the build exports fp32,
    says why in the manifest and the log, and names the bundle fp32."""
    model = make_test_model()
    with torch.no_grad():
        model.conv_up1.weight.mul_(1e4)
        model.conv_up2.weight.mul_(1e4)
    path = save_checkpoint(model, tmp_path / "RealESRGAN_x4plus.pth", REALESRGAN, "params_ema")
    monkeypatch.chdir(tmp_path)  # the default bundle path is relative: engines/<name>
    source = resolve_rrdbnet_source(REALESRGAN, path, overlap=8, report=_quiet)
    opts = BuildOptions(backend="onnxruntime-cpu", precision=Precision.FP16, tile=32, batch=2)
    for attempt in range(2):  # the second build takes the graphs and the verdict from the ONNX cache
        messages: list[str] = []
        with caplog.at_level(logging.WARNING):
            bundle = build_bundle(source, opts, report=messages.append)
        assert "fp16 overflows" in caplog.text
        assert any("reusing the cached ONNX" in m for m in messages) == (attempt == 1)
        caplog.clear()
        assert bundle == Path("engines/realesrgan-onnxruntime-cpu-fp32")
        manifest = read_manifest(bundle, TOOL_VERSION)
        assert manifest.precision is Precision.FP32 and "non-finite" in manifest.precision_fallback
        assert manifest.graphs["rrdbnet"].inputs[0].dtype == "float32"
    assert len(list(cache.glob(f"onnx/*/{FP16_CHECK}"))) == 1
    tiles = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    got = Upscaler.from_bundle(bundle).run_tiles(tiles)
    with torch.no_grad():
        expected = model(torch.from_numpy(tiles)).numpy()
    peak = np.abs(expected).max()
    assert np.isfinite(got).all() and peak > 65504
    # fp32 rounding relative to the largest activations (outputs cancel down from ~1e6)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * peak)


def test_runtime_refuses_what_the_chain_cannot_run(tmp_path, cache, checkpoint):
    bundle = build(tmp_path, checkpoint)
    upscaler = Upscaler.from_bundle(bundle)
    with pytest.raises(SRError, match="no option color_fix"):
        upscaler.upscale(make_image(16, 16), color_fix="wavelet")
    with pytest.raises(SRError, match="takes lr"):
        upscaler.run_tiles(np.zeros((1, 3, TILE, TILE), np.float32), np.zeros(1))
    original = (bundle / MANIFEST_NAME).read_text()
    for edit, fragment in [(lambda d: d["pipeline"].update(family="swinir"), "'swinir' model"),
                           (lambda d: d.update(section={"overlap": 32}), "twice the overlap"),
                           (lambda d: d.update(section={"overlap": "8"}), "section.overlap must be int")]:
        (bundle / MANIFEST_NAME).write_text(original)
        edit_manifest(bundle, edit)
        with pytest.raises(SRError, match=fragment):
            Upscaler.from_bundle(bundle)


# ---- overlap-crop tiling, with a stand-in network of known reach ----------------------------------

def box_x4(radius: int):
    """(n,3,h,w) -> (n,3,4h,4w): a zero-padded box sum of ``radius`` (like stacked convs), then nearest x4."""
    def run(tiles: np.ndarray) -> np.ndarray:
        h, w = tiles.shape[-2:]
        padded = np.pad(tiles.astype(np.float64), ((0, 0), (0, 0), (radius, radius), (radius, radius)))
        out = sum(padded[..., dy:dy + h, dx:dx + w] for dy in range(2 * radius + 1) for dx in range(2 * radius + 1))
        return (out / (2 * radius + 1) ** 2).repeat(4, axis=-2).repeat(4, axis=-1)
    return run


@pytest.mark.parametrize(("height", "width", "tile", "overlap"),
                         [(57, 83, 24, 5), (40, 40, 16, 3), (24, 100, 24, 7), (1, 30, 8, 2), (9, 9, 32, 4)])
def test_crop_tiling_equals_a_whole_image_run(height, width, tile, overlap):
    image = make_image(height, width, seed=height)
    plan = plan_crop_tiles(height, width, tile, overlap)
    whole = box_x4(overlap)(image.transpose(2, 0, 1)[None])[0]
    expected = np.clip(whole, 0, 1).transpose(1, 2, 0)
    for batch in (1, 3):
        got = upscale_tiled(image, box_x4(overlap), tile, overlap, batch)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    if len({y for y, _ in plan.starts}) > 1 or len({x for _, x in plan.starts}) > 1:
        # A network that sees farther than the overlap shows the seams.
        seamed = upscale_tiled(image, box_x4(overlap + 1), tile, overlap, 2)
        reach = box_x4(overlap + 1)(image.transpose(2, 0, 1)[None])[0]
        assert np.abs(seamed - np.clip(reach, 0, 1).transpose(1, 2, 0)).max() > 1e-4


@pytest.mark.parametrize(("length", "tile", "overlap"), [(200, 64, 16), (65, 64, 16), (64, 64, 0), (97, 40, 19)])
def test_keep_ranges_partition_the_axis_with_context(length, tile, overlap):
    plan = plan_crop_tiles(length, length, tile, overlap)
    ranges = keep_ranges([y for y, _ in plan.starts], plan.tile_height, length)
    spans = sorted(ranges.values())
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert all(a[1] == b[0] and a[0] < a[1] for a, b in zip(spans, spans[1:], strict=False))
    for start, (lo, hi) in ranges.items():
        assert lo == 0 or lo - start >= overlap  # real context before the kept part, or the image border
        assert hi == length or start + plan.tile_height - hi >= overlap


def test_crop_tiling_refuses_bad_geometry():
    with pytest.raises(SRError, match="twice the overlap"):
        plan_crop_tiles(100, 100, 32, 16)
    with pytest.raises(SRError, match="non-negative"):
        plan_crop_tiles(100, 100, 32, -1)
    with pytest.raises(SRError, match="RGB"):
        upscale_tiled(np.zeros((8, 8)), box_x4(1), 8, 1, 1)


# ---- the command line -----------------------------------------------------------------------------

def test_cli_build_and_upscale_realesrgan(tmp_path, cache, checkpoint, test_model):
    runner = CliRunner()
    bundle = tmp_path / "cli-bundle"
    result = runner.invoke(main, ["build", "--model", "realesrgan", "--checkpoint", str(checkpoint), "--backend",
                                  "onnxruntime-cpu", "--tile", "64", "--batch", "2", "--overlap", "19",
                                  "-o", str(bundle)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == str(bundle) and "DEMO" not in result.output
    Image.fromarray((make_image(65, 70, seed=5) * 255).round().astype(np.uint8)).save(tmp_path / "in.png")
    result = runner.invoke(main, ["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"),
                                  "-e", str(bundle)])
    assert result.exit_code == 0, result.output
    assert "rrdbnet onnxruntime-cpu fp32" in result.output
    got = read_image(tmp_path / "out.png").pixels
    expected = torch_sr(test_model, read_image(tmp_path / "in.png").pixels)
    assert got.shape == (260, 280, 3)
    assert np.abs(got - expected).max() <= 0.5 / 255 + FP32_ATOL  # 8-bit output rounding
    result = runner.invoke(main, ["inspect", str(bundle)])
    assert result.exit_code == 0 and "rrdbnet, x4, tile 64, batch 2" in result.output and "overlap 19" in result.output
    assert "timesteps" not in result.output
    for args, error in ((["-e", str(bundle)], "CUDA graphs need a GPU bundle"),
                        (["--backend", "torch"], "--cuda-graph goes with -e BUNDLE")):
        result = runner.invoke(main, ["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "graphs.png"),
                                      "--cuda-graph", *args])
        assert result.exit_code == 1 and error in result.output and "Traceback" not in result.output
        assert not (tmp_path / "graphs.png").exists()


def test_cli_build_optimised_for_this_cpu(tmp_path, cache, checkpoint, test_model):
    runner = CliRunner()
    bundle, image_file, out = tmp_path / "cpu-bundle", tmp_path / "in.png", tmp_path / "out.png"
    args = ["build", "--model", "realesrgan", "--checkpoint", str(checkpoint), "--tile", "64", "--batch", "2",
            "--overlap", "19", "--optimize-for-this-cpu", "-o", str(bundle)]
    result = runner.invoke(main, [*args, "--backend", "onnxruntime-cpu"])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(bundle, TOOL_VERSION)
    assert manifest.cpu_target == this_cpu()
    graph = onnx.load(str(bundle / manifest.graphs["rrdbnet"].file), load_external_data=False).graph
    if "avx2" in manifest.cpu_target.isa:  # where ONNX Runtime blocks channels, the saved graph has its layout
        assert any(node.domain == "com.microsoft.nchwc" for node in graph.node)
    image = make_image(65, 70, seed=5)
    np.testing.assert_allclose(Upscaler.from_bundle(bundle).upscale(image), torch_sr(test_model, image),
                               rtol=0, atol=FP32_ATOL)
    result = runner.invoke(main, ["inspect", str(bundle)])
    assert result.exit_code == 0 and "graphs optimised for this CPU" in result.output
    # On a CPU with other instruction sets the saved layout does not apply: refused in one line, no output.
    edit_manifest(bundle, lambda data: data["cpu_target"].update(isa=["avx512f"]))
    Image.fromarray((image * 255).round().astype(np.uint8)).save(image_file)
    result = runner.invoke(main, ["upscale", str(image_file), "-o", str(out), "-e", str(bundle)])
    assert result.exit_code == 1 and "optimised for" in result.output and "rebuild it here" in result.output
    assert "Traceback" not in result.output and not out.exists()
    result = runner.invoke(main, [*args, "--backend", "onnxruntime-cuda"])
    assert result.exit_code == 1 and result.output.strip() == ("error: --optimize-for-this-cpu: ONNX Runtime CPU "
                                                                "options; --backend onnxruntime-cuda does not take them")


@needs_isa_mask
def test_a_bundle_optimised_for_avx512_is_refused_on_an_avx2_only_host(tmp_path, cache, checkpoint):
    """On a real instruction-set change, not an edited manifest: ONNX Runtime's AVX2 kernels block channels
    by 8, not 16, and fail on the saved AVX-512 layout in the middle of a run (ReorderOutput: "Input
    channels must match the NCHWc block-aligned channel count"); the runtime refuses it before it runs."""
    bundle, image_file, out = tmp_path / "avx512-bundle", tmp_path / "in.png", tmp_path / "out.png"
    result = CliRunner().invoke(main, ["build", "--model", "realesrgan", "--checkpoint", str(checkpoint),
                                       "--tile", "64", "--batch", "2", "--overlap", "19",
                                       "--optimize-for-this-cpu", "-o", str(bundle)])
    assert result.exit_code == 0, result.output
    Image.fromarray((make_image(40, 48, seed=3) * 255).round().astype(np.uint8)).save(image_file)
    cli = "import sys; from sr_export.cli import main; sys.exit(main())"
    masked = run_as_avx2_only(["-c", cli, "upscale", str(image_file), "-o", str(out), "-e", str(bundle)], cache)
    assert masked.returncode == 1, masked.stdout + masked.stderr
    error = masked.stderr.strip()
    assert error.count("\n") == 0 and "optimised for" in error and "avx512f" in error and "rebuild it here" in error
    assert not out.exists()


@needs_isa_mask
@needs_openvino
def test_a_bf16_bundle_runs_in_fp32_with_a_warning_on_a_cpu_without_bf16(tmp_path, cache, checkpoint, test_model):
    bundle, out = build(tmp_path, checkpoint, "bf16", Precision.BF16, backend="openvino-cpu"), tmp_path / "out.npy"
    image_file = tmp_path / "in.png"
    Image.fromarray((make_image(40, 48, seed=3) * 255).round().astype(np.uint8)).save(image_file)
    image = read_image(image_file).pixels
    cli = "import sys; from sr_export.cli import main; sys.exit(main())"
    masked = run_as_avx2_only(["-c", cli, "upscale", str(image_file), "-o", str(out), "-e", str(bundle)], cache)
    assert masked.returncode == 0, masked.stdout + masked.stderr
    assert "WARNING: this CPU has no bf16 instructions" in masked.stderr
    # OpenVINO computed it in fp32: the fp32 bound holds, which bf16 arithmetic misses (6.2e-3).
    np.testing.assert_allclose(np.load(out), torch_sr(test_model, image), rtol=0, atol=FP32_ATOL)


def test_the_default_tile_follows_the_backend():
    family = RRDBNetExport()
    assert family.default_tile(BACKENDS["onnxruntime-cpu"]) == CPU_TILE
    assert family.default_tile(BACKENDS["onnxruntime-cuda"]) == family.default_tile(BACKENDS["tensorrt"]) == DEFAULT_TILE


@pytest.mark.slow
def test_cli_demo_build_and_misplaced_options(tmp_path, cache, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./weights here, so the demo model is built
    runner = CliRunner()
    result = runner.invoke(main, ["build", "--model", "bsrgan", "--backend", "onnxruntime-cpu"])
    assert result.exit_code == 0, result.output
    assert "DEMO" in result.output and result.stdout.strip() == "engines/bsrgan-demo-onnxruntime-cpu-fp32"
    manifest = read_manifest(Path("engines/bsrgan-demo-onnxruntime-cpu-fp32"), TOOL_VERSION)
    assert manifest.demo and manifest.pipeline.tile == CPU_TILE  # the CPU default: no overlap recomputed
    for args, fragment in [(["--model", "realesrgan", "--steps", "2"], "--steps: InvSR options"),
                           (["--model", "invsr", "--checkpoint", "x.pth"], "--checkpoint: RRDBNet"),
                           (["--model", "realesrgan", "--tile", "32", "--overlap", "16"], "twice the overlap")]:
        result = runner.invoke(main, ["build", *args])
        assert result.exit_code == 1 and fragment in result.output, result.output


def test_bench_bundles_are_reused_until_what_they_are_built_from_changes(cache, checkpoint, test_model):
    source = resolve_rrdbnet_source(REALESRGAN, checkpoint, RECEPTIVE_RADIUS, report=_quiet)
    opts = BuildOptions(backend="onnxruntime-cpu", precision=Precision.FP32, tile=TILE, batch=BATCH)
    first = cached_bundle(source, opts, "realesrgan", _quiet)
    engine = first / read_manifest(first, TOOL_VERSION).graphs["rrdbnet"].file
    built = engine.stat().st_ino
    messages: list[str] = []
    assert cached_bundle(source, opts, "realesrgan", messages.append) == first
    assert engine.stat().st_ino == built and not any("building" in m for m in messages), messages
    rebatched = cached_bundle(source, replace(opts, batch=BATCH + 1), "realesrgan", _quiet)
    assert rebatched != first and read_manifest(rebatched, TOOL_VERSION).graphs["rrdbnet"].profile != \
        read_manifest(first, TOOL_VERSION).graphs["rrdbnet"].profile
    # A damaged entry is built again, never opened.
    engine.write_bytes(engine.read_bytes()[:-1])
    messages.clear()
    assert cached_bundle(source, opts, "realesrgan", messages.append) == first
    assert any("damaged" in m for m in messages) and any("building" in m for m in messages), messages
    image = make_image(TILE, TILE, seed=3)
    np.testing.assert_allclose(Upscaler.from_bundle(first).upscale(image), torch_sr(test_model, image), rtol=0, atol=FP32_ATOL)


@needs_openvino
def test_openvino_bundles_match_the_module_in_fp32_and_bf16(tmp_path, checkpoint, test_model):
    from sr_runtime.backends.openvino import computes_bf16

    image = make_image(100, 90, seed=5)  # tiled: 64-px tiles with overlap, a partial batch
    expected = torch_sr(test_model, image)
    got = {p: Upscaler.from_bundle(build(tmp_path, checkpoint, p.value, p, backend="openvino-cpu")).upscale(image)
           for p in (Precision.FP32, Precision.BF16)}
    error = {p: float(np.abs(g - expected).max()) for p, g in got.items()}
    print(f"RRDBNet openvino-cpu vs the module, max |diff|: fp32 {error[Precision.FP32]:.2e}, bf16 {error[Precision.BF16]:.2e}")
    assert error[Precision.FP32] <= FP32_ATOL
    # bf16 where the CPU has it (OPENVINO_BF16_ATOL's comment); else OpenVINO computes it in fp32.
    assert error[Precision.BF16] <= (OPENVINO_BF16_ATOL if computes_bf16() else FP32_ATOL)
