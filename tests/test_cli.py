"""``sr-export upscale --backend torch`` end to end on tiny official-format checkpoints, and how the
command line takes each family's options."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import make_image

from sr_export.cli import main
from sr_export.families.invsr.reference import InvSRReference
from sr_export.families.invsr.schedule import DEFAULT_TIMESTEPS, build_schedule
from sr_runtime.families.invsr.image_loop import UpscaleSettings
from sr_runtime.images import read_image, write_image

TILE = 32


def _run(args) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def _torch_args(tiny_checkpoints, steps: int):
    sd, pth, yaml = tiny_checkpoints
    return ["--backend", "torch", "--sd-turbo", sd, "--noise-predictor", pth, "--noise-predictor-config", yaml,
            "--steps", steps, "--tile", TILE]


@pytest.mark.parametrize("steps", [1, 3])
def test_upscale_with_the_torch_reference(tmp_path, tiny_checkpoints, tiny_components, steps):
    image = make_image(40, 50, seed=steps)
    write_image(tmp_path / "in.png", image)
    pixels = read_image(tmp_path / "in.png").pixels
    code, output = _run(["upscale", tmp_path / "in.png", "-o", tmp_path / "out.npy", *_torch_args(tiny_checkpoints, steps)])
    assert code == 0, output
    got = np.load(tmp_path / "out.npy")
    schedule = build_schedule(tiny_components.scheduler_config, DEFAULT_TIMESTEPS[steps])
    expected = InvSRReference(tiny_components, schedule).upscale(pixels, UpscaleSettings(tile=TILE, batch=8))
    assert got.shape == (160, 200, 3) and got.dtype == np.float32
    assert np.abs(got - expected).max() <= 1e-5


def test_folder_in_folder_out_with_png(tmp_path, tiny_checkpoints):
    inputs = tmp_path / "lr"
    inputs.mkdir()
    write_image(inputs / "a.png", make_image(20, 24, seed=1))
    write_image(inputs / "b.png", make_image(33, 17, seed=2), bit_depth=16)
    code, output = _run(["upscale", inputs, "-o", tmp_path / "sr", *_torch_args(tiny_checkpoints, 1), "--color-fix", "wavelet"])
    assert code == 0, output
    a, b = read_image(tmp_path / "sr" / "a.png"), read_image(tmp_path / "sr" / "b.png")
    assert a.pixels.shape == (80, 96, 3) and a.bit_depth == 8
    assert b.pixels.shape == (132, 68, 3) and b.bit_depth == 16  # 16-bit in, 16-bit out


@pytest.mark.parametrize(
    "content, problem",
    [(None, "no such file"), (b"", "empty"), (b"\x89PNG\r\n\x1a\nnot really", "")],
)
def test_a_bad_image_is_one_line_and_a_failure(tmp_path, tiny_checkpoints, content, problem):
    bad = tmp_path / "bad.png"
    if content is not None:
        bad.write_bytes(content)
    result = CliRunner().invoke(main, ["upscale", str(bad), "-o", str(tmp_path / "o.png"),
                                       *map(str, _torch_args(tiny_checkpoints, 1))])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and str(bad) in errors[0] and problem in errors[0], result.output
    assert result.output.strip().splitlines()[-1] == errors[0]
    assert "Traceback" not in result.output and not (tmp_path / "o.png").exists()


def test_missing_checkpoints_are_named(tmp_path, tiny_checkpoints, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_image(tmp_path / "in.png", make_image(8, 8))
    code, output = _run(["upscale", tmp_path / "in.png", "-o", tmp_path / "o.png", "--backend", "torch",
                         "--sd-turbo", tiny_checkpoints[0]])
    assert code == 1 and "no noise predictor" in output


def test_upscale_needs_a_bundle_or_the_torch_backend(tmp_path):
    write_image(tmp_path / "in.png", make_image(8, 8))
    code, output = _run(["upscale", tmp_path / "in.png", "-o", tmp_path / "o.png"])
    assert code == 1 and "-e BUNDLE" in output


def test_help_lists_each_familys_options_under_its_title():
    code, output = _run(["build", "--help"])
    assert code == 0
    invsr, rrdbnet, tensorrt = (output.index(h) for h in ("InvSR options", "RRDBNet options", "TensorRT options"))
    assert invsr < output.index("--noise-predictor ") < rrdbnet < output.index("--overlap") < tensorrt
    code, output = _run(["upscale", "--help"])
    assert "InvSR reference options (--backend torch" in output and "--color-fix" in output


def test_options_of_another_family_or_of_the_reference_are_refused(tmp_path, tiny_checkpoints):
    write_image(tmp_path / "in.png", make_image(8, 8))
    code, output = _run(["upscale", tmp_path / "in.png", "-o", tmp_path / "o.png", "--backend", "torch",
                         "--model", "realesrgan", "--steps", "2"])
    assert code == 1 and "--steps: InvSR options; --model realesrgan takes" in output
    code, output = _run(["upscale", tmp_path / "in.png", "-o", tmp_path / "o.png", "--backend", "torch",
                         "--seed", "3", "--model", "bsrgan"])
    assert code == 1 and "--seed: InvSR" in output and "options; --model bsrgan takes" in output


@pytest.mark.parametrize("name", ["invsr", "rrdbnet", "resshift", "s3diff", "osediff"])
def test_each_per_image_option_is_the_runtimes_with_its_default(name):
    """A family's upscale options are its runtime options' fields, one each, with the runtime's defaults (None
    standing for the official value)."""
    import dataclasses

    import click

    from sr_export.families import family_named
    from sr_runtime.families import family_class

    family = family_named(name)
    fields = dataclasses.fields(family_class(name).options_type)
    assert {o.name for o in family.run_options} == {f.name for f in fields}
    unset = click.Command("upscale", params=list(family.run_options)).make_context("upscale", []).params
    assert unset == {f.name: f.default for f in fields}
    assert family.run_values({**{f.name: f"value of {f.name}" for f in fields}, "other": 1}) == {
        f.name: f"value of {f.name}" for f in fields}


def test_the_rrdbnet_reference_runs_the_network_on_the_whole_image(tmp_path):
    import torch

    from sr_export.families.rrdbnet.model import TINY_CONFIG, RRDBNet, write_random_rrdbnet

    checkpoint = write_random_rrdbnet(tmp_path / "RealESRGAN_x4plus.pth", seed=5)
    image = make_image(21, 34, seed=3)
    write_image(tmp_path / "in.png", image)
    code, output = _run(["upscale", tmp_path / "in.png", "-o", tmp_path / "out.npy", "--backend", "torch",
                         "--model", "realesrgan", "--checkpoint", checkpoint])
    assert code == 0, output
    torch.manual_seed(5)
    model = RRDBNet(TINY_CONFIG).eval()
    with torch.no_grad():
        lr = torch.from_numpy(read_image(tmp_path / "in.png").pixels.transpose(2, 0, 1).copy())[None]
        expected = model(lr)[0].clamp(0, 1).numpy().transpose(1, 2, 0)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-6)


def test_the_command_line_loads_without_torch():
    """`sr-export upscale -e` must work on a runtime-only install, and every command starts fast."""
    import subprocess
    import sys

    code = ("import sys, sr_export.cli\n"
            "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'onnx') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True)
