"""OSEDiff on the built-in demo model (one build per module): the checkpoint and its LoRA merge, the official
preprocessing and prompt, the graphs against their torch modules, the bundle against the PyTorch reference
(untiled and through every official tiling), fp16 graphs, the CLI."""

from __future__ import annotations

import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner
from helpers import assert_graphs_match_modules, make_image

from sr_export.cli import main
from sr_export.families.osediff import graphs as specs
from sr_export.families.osediff.checkpoint import load_osediff_checkpoint
from sr_export.families.osediff.components import load_components
from sr_export.families.osediff.reference import OSEDiffReference
from sr_export.families.osediff.source import demo_checkpoints
from sr_export.metrics import psnr
from sr_export.onnx_export import export_graph
from sr_export.sd.loading import load_sd
from sr_export.sd.lora import PEFT_LORA_ALPHA
from sr_export.sd.models import SD21_BASE
from sr_runtime.errors import SRError
from sr_runtime.families.osediff.graphs import dims
from sr_runtime.families.osediff.options import OSEDiffOptions
from sr_runtime.families.osediff.preprocess import upscale, upscaled_size
from sr_runtime.families.osediff.prompt import tag_string, validation_prompt
from sr_runtime.images import write_image
from sr_runtime.pipeline import Upscaler
from sr_runtime.precision import Precision
from sr_runtime.sd.clip_tokenizer import ClipTokenizer

TILE = 128  # LR px: the smallest the official runs without enlarging first
# On the 512 x 512 image: 4 encoder tiles, 4 latent tiles, 4 decoder tiles.
ALL_TILINGS = dict(latent_tile=40, latent_overlap=8, vae_encoder_tile=320, vae_decoder_tile=40)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """(the demo bundle, the reference of the same checkpoints, their paths), built with the tests' isolated cache."""
    bundle = tmp_path_factory.mktemp("osediff-bundle") / "demo"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SR_EXPORT_CACHE", str(tmp_path_factory.getbasetemp() / "sr-export-cache"))
        result = CliRunner().invoke(main, ["build", "--model", "osediff", "--backend", "onnxruntime-cpu", "-o",
                                           str(bundle)])
        assert result.exit_code == 0, result.output
        assert "DEMO model with random weights" in result.output
        paths = demo_checkpoints()
    return bundle, OSEDiffReference(load_components(paths)), paths


@pytest.mark.slow
def test_the_lora_is_merged_as_peft_computes_it(demo):
    _, reference, paths = demo
    merged = reference.components.sd
    base = load_sd(paths.sd21, SD21_BASE)
    ck = load_osediff_checkpoint(paths.checkpoint)
    scale = PEFT_LORA_ALPHA / ck.rank_unet
    for network, other, name, adapter, state in (
        (merged.unet, base.unet, "down_blocks.0.resnets.0.conv1", "default_encoder", ck.unet_state),
        (merged.unet, base.unet, "up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k", "default_decoder",
         ck.unet_state),
        (merged.unet, base.unet, "mid_block.attentions.0.proj_in", "default_others", ck.unet_state),
        (merged.vae, base.vae, "quant_conv", "default_encoder", ck.vae_state),
    ):
        layer, original = network.get_submodule(name), other.get_submodule(name)
        down, up = state[f"{name}.lora_A.{adapter}.weight"], state[f"{name}.lora_B.{adapter}.weight"]
        x = torch.randn(2, original.weight.shape[1], 6, 6) if original.weight.ndim == 4 else torch.randn(2, 5, original.weight.shape[1])
        with torch.no_grad():
            if original.weight.ndim == 4:  # PEFT's conv LoRA: A with the layer's kernel, B 1x1
                lora = torch.nn.functional.conv2d(torch.nn.functional.conv2d(x, down, None, original.stride,
                                                                             original.padding), up)
            else:
                lora = x @ down.T @ up.T
            torch.testing.assert_close(layer(x), original(x) + scale * lora, rtol=1e-4, atol=1e-5)
    # conv_in is the checkpoint's own (base_layer) weight plus its LoRA
    assert not torch.equal(merged.unet.conv_in.bias, base.unet.conv_in.bias)
    assert torch.equal(merged.unet.conv_in.bias, ck.unet_state["conv_in.base_layer.bias"])


@pytest.mark.parametrize(("change", "fragment"), [
    (lambda ck: ck["state_dict_unet"].pop("conv_in.lora_A.default_encoder.weight"), "no LoRA weights conv_in"),
    (lambda ck: ck.update(rank_unet=2), "wrong LoRA rank"),
    (lambda ck: ck["state_dict_vae"].update(extra=torch.zeros(1)), "no targeted layer takes"),
    (lambda ck: ck.update(unet_lora_others_modules=["mid_block.nothing"]), "no layer of the network"),
    (lambda ck: ck.update(payload=shutil.rmtree), "osediff.pkl"),
])
def test_a_bad_checkpoint_is_refused_in_one_line(demo, tmp_path, change, fragment):
    _, _, paths = demo
    ck = torch.load(paths.checkpoint, weights_only=True)
    change(ck)
    bad = tmp_path / "osediff.pkl"
    torch.save(ck, bad)
    from dataclasses import replace

    with pytest.raises(SRError) as caught:
        load_components(replace(paths, checkpoint=bad))
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(("height", "width", "expected"), [
    (32, 32, (512, 512)),  # under 128 px: enlarged to 128 first, so larger than x4
    (40, 36, (568, 512)),  # 36 -> 128, 40 -> 142; x4 568 x 512
    (130, 201, (520, 800)),  # x4 is 520 x 804, cut to multiples of 8
])
def test_the_official_sizes(height, width, expected):
    assert upscaled_size(height, width) == expected
    assert upscale(make_image(height, width, seed=1)).shape == (3, *expected)


def test_the_prompt_is_built_as_the_official_builds_it():
    tags = ["dog", "grass", "sky"]
    assert tag_string(np.array([0.7, 0.2, 0.9]), tags, [0.68, 0.68, 0.9]) == "dog"  # strictly above
    assert validation_prompt("dog, sky", "") == "dog, sky, ,"
    assert validation_prompt("", "") == ", ,"
    assert validation_prompt("dog", "clean") == "dog, clean,"


def test_the_bundles_tokenizer_gives_the_releases_ids(demo):
    bundle, reference, _ = demo
    tokenizer = ClipTokenizer.from_folder(bundle)
    for prompt in ("tiny tag 1, tiny tag 12, ,", ", ,", "tiny tag 3, a user's prompt!,", "tiny " * 100):
        assert tokenizer.encode(prompt).tolist() == reference.tokenize(prompt).tolist()


@pytest.mark.slow
def test_the_bundle_matches_the_reference(demo):
    bundle, reference, _ = demo
    upscaler = Upscaler.from_bundle(bundle)
    for height, width, options in (
        (40, 36, {}),  # one body chain, the AdaIN colour fix on the 8-bit image
        (128, 128, dict(color_fix="wavelet", prompt="sharp", seed=3, **ALL_TILINGS)),  # every tiling
    ):
        image = make_image(height, width, seed=height)
        prompts = []
        want = reference.upscale(image, OSEDiffOptions(**options), on_prompt=prompts.append)
        got = upscaler.upscale(image, **options)
        assert got.shape == want.shape == (*upscaled_size(height, width), 3) and psnr(got, want) >= 45, options
        assert prompts[0].endswith(f", {options.get('prompt', '')},")


@pytest.mark.slow
def test_each_graph_matches_its_module(demo):
    bundle, reference, _ = demo
    c = reference.components
    section = reference.section
    sizes = dims(1, 4 * TILE, 4 * TILE, section)
    chosen = [*specs.GRAPHS, *(s for s in specs.segment_specs(section) if s.name.endswith(("segment0", "segment1",
                                                                                          "segment13")))]
    assert_graphs_match_modules(bundle, chosen, c, sizes)


@pytest.mark.slow
def test_fp16_graphs_are_finite(demo, tmp_path):
    _, reference, _ = demo
    section = reference.section
    sizes = dims(1, 4 * TILE, 4 * TILE, section)
    for spec in (specs.TAGGER, specs.UNET):  # fp32 probabilities from an fp16 Swin; the UNet at t = 999
        path = export_graph(spec, reference.components, Precision.FP16, tmp_path / f"{spec.name}.onnx", sizes)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feed = {t.name: x.numpy() for t, x in zip(spec.inputs, spec.sample_inputs(sizes, Precision.FP16), strict=True)}
        (out,) = session.run(None, feed)
        assert out.dtype == (np.float32 if spec.name == "tagger" else np.float16) and np.isfinite(out).all(), spec.name


@pytest.mark.slow
def test_the_cli_runs_the_bundle_and_the_reference_alike(demo, tmp_path):
    bundle, _, paths = demo
    lr = tmp_path / "lr.png"
    write_image(lr, make_image(32, 40, seed=5))
    runner = CliRunner()
    result = runner.invoke(main, ["upscale", str(lr), "-o", str(tmp_path / "bundle.npy"), "-e", str(bundle),
                                  "--prompt", "clean"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["upscale", str(lr), "-o", str(tmp_path / "reference.npy"), "--backend", "torch",
                                  "--model", "osediff", "--sd21", str(paths.sd21), "--checkpoint", str(paths.checkpoint),
                                  "--ram", str(paths.ram), "--dape", str(paths.dape), "--prompt", "clean"])
    assert result.exit_code == 0, result.output
    assert psnr(np.load(tmp_path / "bundle.npy"), np.load(tmp_path / "reference.npy")) >= 45
    result = runner.invoke(main, ["upscale", str(lr), "-o", str(tmp_path / "x.png"), "-e", str(bundle), "--color-fix",
                                  "ycbcr"])
    assert result.exit_code == 1 and "adain" in result.output and "Traceback" not in result.output
    result = runner.invoke(main, ["inspect", str(bundle)])
    assert result.exit_code == 0 and "DEMO" in result.output and "RAM's tags" in result.output


def test_the_architecture_count_is_the_checkpoints(demo):
    from sr_export.families.osediff.bench import architecture_count, checkpoint_count
    from sr_export.sd.random_checkpoints import TINY_TILED_VAE, TINY_UNET

    _, reference, _ = demo
    assert architecture_count(TINY_UNET, TINY_TILED_VAE) == checkpoint_count(reference.components.checkpoint)
