"""Data safety and bad input, as a hostile new user would try them: no build deletes or replaces what
is not a bundle, no upscale writes onto its inputs, the cache shares nothing writable with bundles and
heals when damaged, concurrent builds are safe, batches go on past bad images, one line per problem."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import make_image
from standin_bundle import write_bundle

from sr_export.cli import main
from sr_runtime.bundle_check import verify_bundle
from sr_runtime.images import read_image, write_image
from sr_runtime.manifest import MANIFEST_NAME

RRDBNET_BUILD = ["build", "--model", "realesrgan", "--backend", "onnxruntime-cpu", "--tile", "32", "--overlap", "4"]


def _invoke(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def _one_error(output: str) -> str:
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, output
    return errors[0]


# ---- build never destroys what is not a bundle ------------------------------------------------------

def test_build_refuses_a_folder_that_is_not_a_bundle_and_an_existing_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("p").mkdir()
    Path("p/thesis.txt").write_text("x")
    code, output = _invoke(*RRDBNET_BUILD, "-o", "p")
    assert code == 1 and "not an sr-export bundle" in _one_error(output)
    assert Path("p/thesis.txt").read_text() == "x" and os.listdir("p") == ["thesis.txt"]
    Path("notes.md").write_text("keep me")
    code, output = _invoke(*RRDBNET_BUILD, "-o", "notes.md")
    assert code == 1 and "existing file" in _one_error(output) and Path("notes.md").read_text() == "keep me"


@pytest.mark.parametrize("target", [".", "..", "~"])
def test_build_refuses_the_working_directory_its_parents_and_home(tmp_path, monkeypatch, target):
    work = tmp_path / "home" / "work"
    work.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(work)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, output = _invoke(*RRDBNET_BUILD, "-o", os.path.expanduser(target))
    assert code == 1 and "working directory" in _one_error(output)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # no ..tmp-* folder left anywhere


def test_build_replaces_a_bundle_and_fills_an_empty_folder_but_not_a_symlink(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("empty").mkdir()
    assert _invoke(*RRDBNET_BUILD, "-o", "empty")[0] == 0 and (Path("empty") / MANIFEST_NAME).is_file()
    code, output = _invoke(*RRDBNET_BUILD, "-o", "empty")
    assert code == 0 and "replacing the bundle empty" in output
    Path("link").symlink_to("empty")
    code, output = _invoke(*RRDBNET_BUILD, "-o", "link")
    assert code == 1 and "symbolic link" in _one_error(output) and Path("link").is_symlink()


# ---- the cache shares nothing writable with bundles, and heals ---------------------------------------

def test_bundle_files_are_copies_and_damage_never_travels(tmp_path, monkeypatch, isolated_cache):
    monkeypatch.chdir(tmp_path)
    assert _invoke(*RRDBNET_BUILD, "-o", "b")[0] == 0
    engine = Path("b/rrdbnet.onnx")
    cached = list(isolated_cache.glob("onnx/*/rrdbnet.onnx"))
    assert engine.stat().st_nlink == 1 and all(not os.path.samefile(engine, c) for c in cached)
    data = bytearray(engine.read_bytes())
    data[len(data) // 2] ^= 0xFF
    engine.write_bytes(bytes(data))  # the user damages the bundle...
    assert _invoke(*RRDBNET_BUILD, "-o", "b")[0] == 0  # ...and rebuilds it as told
    verify_bundle(Path("b"))
    for entry in cached:  # now the cache itself is damaged: the next build notices and exports again
        entry.write_bytes(entry.read_bytes()[::-1])
    code, output = _invoke(*RRDBNET_BUILD, "-o", "b")
    assert code == 0 and "is damaged" in output and "exporting rrdbnet" in output
    verify_bundle(Path("b"))


def test_concurrent_builds_on_a_cold_cache(tmp_path):
    env = {**os.environ, "SR_EXPORT_CACHE": str(tmp_path / "cache")}
    command = [sys.executable, "-c", "from sr_export.cli import main; main()", *RRDBNET_BUILD]
    runs = [subprocess.Popen([*command, "-o", name], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
            for name in ("same", "same", "other")]
    for run in runs:
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
    for name in ("same", "other"):
        verify_bundle(tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "other", "same"]  # no partial folders


# ---- upscale never writes onto its inputs ---------------------------------------------------------

@pytest.fixture
def bundle(tmp_path):
    return write_bundle(tmp_path / "bundle")


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "in"
    for name, seed in (("a.png", 1), ("b.png", 2)):
        write_image(folder / name, make_image(20, 24, seed=seed))
    return folder


def test_upscale_refuses_outputs_that_are_inputs(tmp_path, bundle, images):
    a = images / "a.png"
    original = a.read_bytes()
    (tmp_path / "alias.png").symlink_to(a)
    os.link(a, tmp_path / "hard.png")
    cases = [(a, a, "would overwrite the input"), (images, images, "is the input folder"),
             (a, images, "would overwrite the input"), (a, tmp_path / "alias.png", "would overwrite the input"),
             (a, tmp_path / "hard.png", "would overwrite the input"),
             (images, tmp_path / "in" / ".." / "in", "is the input folder")]
    for source, output, message in cases:
        code, text = _invoke("upscale", source, "-o", output, "-e", bundle)
        assert code == 1 and message in _one_error(text), (source, output, text)
    assert a.read_bytes() == original and sorted(os.listdir(images)) == ["a.png", "b.png"]
    assert _invoke("upscale", a, "-o", images / "a_x4.png", "-e", bundle)[0] == 0  # a distinct file is fine


# ---- bad input: the batch goes on, every problem is one line naming the file ---------------------------

def test_a_folder_run_processes_every_image_and_reports_the_bad_ones(tmp_path, bundle, images):
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    write_image(images / "thin.png", np.full((1, 40, 3), 0.5, np.float32))  # 40x1: too thin for InvSR's padding
    (images / "notes.txt").write_text("not an image")
    code, output = _invoke("upscale", images, "-o", tmp_path / "out", "-e", bundle)
    assert code == 1
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2
    assert str(images / "broken.png") in errors[0] and str(images / "thin.png") in errors[1]
    assert "too small" in errors[1]
    assert "2 done, 2 failed, 1 skipped" in output
    assert sorted(os.listdir(tmp_path / "out")) == ["a.png", "b.png"]
    assert read_image(tmp_path / "out" / "a.png").pixels.shape == (80, 96, 3)


def test_an_image_above_the_memory_limit_is_refused_before_it_starts(tmp_path, bundle):
    write_image(tmp_path / "big.png", make_image(300, 200))
    code, output = _invoke("upscale", tmp_path / "big.png", "-o", tmp_path / "o.png", "-e", bundle,
                           "--max-memory", "0.01")
    line = _one_error(output)
    assert code == 1 and str(tmp_path / "big.png") in line and "--max-memory" in line and "tiles" in line
    assert not (tmp_path / "o.png").exists()
    assert _invoke("upscale", tmp_path / "big.png", "-o", tmp_path / "o.png", "-e", bundle, "--max-memory", "1")[0] == 0


@pytest.mark.parametrize("option", [["--timesteps", "300"], ["--tile", "64"], ["--batch", "2"], ["--device", "cpu"],
                                    ["--dtype", "fp16"], ["--model", "invsr"]])
def test_options_of_the_torch_path_are_refused_with_a_bundle(tmp_path, bundle, images, option):
    code, output = _invoke("upscale", images / "a.png", "-o", tmp_path / "o.png", "-e", bundle, *option)
    assert code == 1 and option[0] in _one_error(output)


def test_steps_the_bundle_does_not_run_are_refused_before_any_image(tmp_path, bundle, images):
    code, output = _invoke("upscale", images, "-o", tmp_path / "out", "-e", bundle, "--steps", "3")
    assert code == 1 and "steps 3: this model runs step groups of 2 steps" in _one_error(output)
    assert not (tmp_path / "out").exists()


def test_a_negative_seed_is_refused_on_both_paths(tmp_path, bundle, images, tiny_checkpoints):
    from sr_runtime.errors import SRError
    from sr_runtime.families.invsr.image_loop import UpscaleSettings

    for path in (["-e", bundle], ["--backend", "torch", "--sd-turbo", tiny_checkpoints[0]]):
        result = CliRunner().invoke(main, [str(a) for a in ("upscale", images / "a.png", "-o", tmp_path / "o.png",
                                                             "--seed", "-1", *path)])
        assert result.exit_code == 2 and "--seed" in result.output and "Traceback" not in result.output
    with pytest.raises(SRError, match="seed -1"):
        UpscaleSettings(seed=-1)


def test_the_step_count_follows_from_the_timesteps():
    from sr_export.families import family_named
    from sr_runtime.errors import SRError

    invsr = family_named("invsr")
    invsr.check_build("invsr", {"steps": None, "timesteps": ("300,150",)}, 128)  # the README's example
    with pytest.raises(SRError, match="--steps is 3"):
        invsr.check_build("invsr", {"steps": 3, "timesteps": ("300,150",)}, 128)
