"""Data safety and bad input, as a hostile new user would try them: no build deletes or replaces what
is not a bundle, no upscale writes onto its inputs, the cache shares nothing writable with bundles and
heals when damaged, concurrent builds are safe, batches go on past bad images, one line per problem."""

from __future__ import annotations

import os
import subprocess
import sys
import time
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


@pytest.mark.slow
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


# ---- an existing file is replaced only when asked; every written file obeys the output rules ----------------

def test_an_existing_output_is_kept_unless_overwrite_and_the_others_go_on(tmp_path, bundle, images):
    mix = tmp_path / "mix"
    mix.mkdir()
    (mix / "a.png").write_bytes(b"the user's own a.png")
    code, output = _invoke("upscale", images, "-o", mix, "-e", bundle)
    assert code == 1 and "mix/a.png exists; pass --overwrite to replace it" in _one_error(output)
    assert (mix / "a.png").read_bytes() == b"the user's own a.png" and read_image(mix / "b.png").pixels.shape[0] == 80
    single = tmp_path / "photo.png"
    single.write_bytes(b"unrelated")
    code, output = _invoke("upscale", images / "a.png", "-o", tmp_path, "-e", bundle)  # a folder: tmp_path/a.png
    assert code == 0
    code, output = _invoke("upscale", images / "a.png", "-o", single, "-e", bundle)
    assert code == 1 and "exists" in _one_error(output) and single.read_bytes() == b"unrelated"
    assert _invoke("upscale", images, "-o", mix, "-e", bundle, "--overwrite")[0] == 0
    assert read_image(mix / "a.png").pixels.shape == (80, 96, 3)
    assert sorted(os.listdir(mix)) == ["a.png", "b.png"]  # no temporary file left


def test_what_is_not_a_plain_file_is_never_replaced(tmp_path, bundle, images):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    (tmp_path / "folder.png").mkdir()
    for target in (fifo, tmp_path / "folder.png"):
        code, output = _invoke("upscale", images / "a.png", "-o", target, "-e", bundle, "--overwrite")
        assert code == 1 and "not a plain file" in _one_error(output)
    assert fifo.is_fifo()
    code, output = _invoke("upscale", fifo, "-o", tmp_path / "o.png", "-e", bundle)
    assert code == 1 and "not a regular file (a pipe" in _one_error(output)


@pytest.mark.parametrize("steps_map, message", [
    ("in/{stem}.png", "would overwrite the input"),
    ("out/{stem}.png", "would both be written to"),
    ("bundle/{stem}.png", "inside the bundle"),
    ("maps/map.png", "put {stem} in the path"),
    ("list.txt", "would overwrite the input"),
])
def test_steps_maps_obey_every_output_rule(tmp_path, bundle, images, steps_map, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # The list file is an input too; with one image the map needs no {stem}.
    Path("list.txt").write_text("in/a.png\n" if steps_map == "list.txt" else "in/a.png\nin/b.png\n")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code, output = _invoke("upscale", "list.txt", "-o", "out", "-e", bundle, "--steps-map", steps_map)
    assert code == 1 and message in _one_error(output)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before and not Path("out").exists()


def test_an_existing_steps_map_is_kept_unless_overwrite(tmp_path, bundle, images):
    (tmp_path / "a_map.png").write_bytes(b"mine")
    args = ("upscale", images / "a.png", "-o", tmp_path / "a.png", "-e", bundle, "--steps-map", tmp_path / "a_map.png")
    code, output = _invoke(*args)
    assert code == 1 and "a_map.png exists" in _one_error(output) and not (tmp_path / "a.png").exists()
    assert _invoke(*args, "--overwrite")[0] == 0 and read_image(tmp_path / "a_map.png").pixels.shape == (20, 24, 3)


def test_long_output_names_and_a_killed_runs_temporary_file(tmp_path, bundle, images):
    from sr_runtime.images import temp_prefix

    long_name = tmp_path / ("x" * 251 + ".png")  # 255 bytes: the longest name; its temporary name is shortened
    assert _invoke("upscale", images / "a.png", "-o", long_name, "-e", bundle)[0] == 0 and long_name.is_file()
    target = tmp_path / "o.png"
    left = tmp_path / f"{temp_prefix(target)}0badc0de.tmp"  # as a killed run leaves it
    left.write_bytes(b"half an image")
    assert _invoke("upscale", images / "a.png", "-o", target, "-e", bundle)[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_file_system_refusal_is_one_line(tmp_path, bundle, images):
    code, output = _invoke("upscale", images / "a.png", "-o", "/proc/sr-export-test/o.png", "-e", bundle)
    assert code == 1 and "/proc/sr-export-test" in _one_error(output)
    code, output = _invoke(*RRDBNET_BUILD, "-o", "/proc/sr-export-bundle")
    assert code == 1 and "/proc" in _one_error(output)


# ---- build replaces only what holds exactly a bundle -------------------------------------------------------

def test_build_keeps_a_bundle_folder_the_user_put_files_into_and_a_fake_manifest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _invoke(*RRDBNET_BUILD, "-o", "b")[0] == 0
    Path("b/notes.md").write_text("mine")
    code, output = _invoke(*RRDBNET_BUILD, "-o", "b")
    assert code == 1 and "also holds notes.md" in _one_error(output) and Path("b/notes.md").read_text() == "mine"
    Path("fake").mkdir()
    Path("fake/manifest.json").write_text('{"format": "sr-export-bundle"}')
    code, output = _invoke(*RRDBNET_BUILD, "-o", "fake")
    assert code == 1 and "not an sr-export bundle" in _one_error(output) and os.listdir("fake") == ["manifest.json"]


# ---- a damaged or foreign bundle is refused before it runs -----------------------------------------------

def test_a_changed_manifest_value_is_refused(tmp_path, bundle, images):
    manifest = bundle / MANIFEST_NAME
    manifest.write_text(manifest.read_text().replace('"latent_scale": 0.18215', '"latent_scale": 0.2'))
    code, output = _invoke("upscale", images / "a.png", "-o", tmp_path / "o.png", "-e", bundle)
    assert code == 1 and "changed since the build" in _one_error(output) and not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("name", [MANIFEST_NAME, "unet_step.onnx"])
def test_symbolic_links_inside_a_bundle_are_refused(tmp_path, bundle, images, name):
    outside = tmp_path / f"outside-{name}"
    (bundle / name).rename(outside)
    (bundle / name).symlink_to(outside)
    code, output = _invoke("upscale", images / "a.png", "-o", tmp_path / "o.png", "-e", bundle, "--no-verify")
    assert code == 1 and "symbolic link" in _one_error(output)


def test_a_manifest_that_disagrees_with_its_engine_is_refused_when_the_bundle_opens(tmp_path, bundle, images):
    from helpers import edit_manifest

    edit_manifest(bundle, lambda data: data["graphs"]["unet_step"]["inputs"][0].update(dtype="float16"))
    code, output = _invoke("upscale", images, "-o", tmp_path / "out", "-e", bundle)
    assert code == 1 and "engine unet_step.onnx has" in _one_error(output) and "float16" in output
    assert not (tmp_path / "out").exists()


# ---- the cache prunes only its own entries ------------------------------------------------------------------

def test_prune_never_touches_a_folder_the_cache_did_not_make(tmp_path, monkeypatch):
    user = tmp_path / "photos"
    (user / "2024" / "trip").mkdir(parents=True)
    (user / "2024" / "trip" / "complete").write_text("{}")
    (user / "2024" / ".trip.tmp-1a2b3c4d").mkdir()
    before = sorted(str(p) for p in user.rglob("*"))
    monkeypatch.setenv("SR_EXPORT_CACHE", str(user))
    result = CliRunner().invoke(main, ["cache", "prune", "--unused-days", "0"])
    assert result.exit_code == 1 and "did not put there" in _one_error(result.output)
    assert sorted(str(p) for p in user.rglob("*")) == before


def test_prune_removes_only_entries_whose_marker_is_its_own(tmp_path, monkeypatch):
    from sr_export.cache import cache_root, cached_folder

    monkeypatch.setenv("SR_EXPORT_CACHE", str(tmp_path / "cache"))
    entry = cached_folder(cache_root() / "onnx" / "entry", lambda tmp: (tmp / "a.bin").write_bytes(b"x"))
    foreign = cache_root() / "onnx" / "foreign"
    foreign.mkdir()
    (foreign / "complete").write_text('{"not": "ours"}')
    result = CliRunner().invoke(main, ["cache", "prune", "--unused-days", "0"])
    assert result.exit_code == 0 and "removed 1 entry" in result.output
    assert not entry.exists() and (foreign / "complete").is_file()


def test_prune_skips_an_entry_a_running_build_uses(tmp_path):
    env = {**os.environ, "SR_EXPORT_CACHE": str(tmp_path / "cache")}
    user = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from sr_export.cache import cache_root, cached_folder\n"
        "cached_folder(cache_root() / 'onnx' / 'held', lambda tmp: (tmp / 'a.bin').write_bytes(b'x'))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n")], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert user.stdout.readline().strip() == "ready"
        done = subprocess.run([sys.executable, "-c", "from sr_export.cli import main; main()", "cache", "prune",
                               "--unused-days", "0"], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "skipping onnx/held: a run is using it" in done.stdout
        assert (tmp_path / "cache" / "onnx" / "held" / "a.bin").is_file()
    finally:
        user.kill()
        user.wait()


# ---- numbers: finite, in range, and options that apply ----------------------------------------------------

@pytest.mark.parametrize("args, option", [
    (["upscale", "in/a.png", "-o", "o.png", "--max-memory", "nan"], "--max-memory"),
    (["upscale", "in/a.png", "-o", "o.png", "--max-memory", "inf"], "--max-memory"),
    (["upscale", "in/a.png", "-o", "o.png", "--steps", "auto", "--adaptive-thresholds", "0.1,nan"],
     "--adaptive-thresholds"),
    (["cache", "prune", "--unused-days", "nan"], "--unused-days"),
    (["build", "--batch", "1000000000000"], "--batch"),
    (["build", "--tile", "100000000"], "--tile"),
    (["build", "--backend", "tensorrt", "--workspace", "nan"], "--workspace"),
    (["compare", "bundle", "--tiles", "0"], "--tiles"),
])
def test_absurd_and_non_finite_numbers_are_refused(tmp_path, monkeypatch, images, bundle, args, option):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and option in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("option", [["--opt-level", "2"], ["--strongly-typed"], ["--no-fused-group-norm"]])
def test_options_of_another_backend_are_refused_when_auto_picks_one(tmp_path, option):
    from sr_export.builders.backends import select_backend

    picked = select_backend("auto").name
    if picked in ("tensorrt", "onnxruntime-cuda"):
        pytest.skip(f"auto picks {picked} here, which may take {option[0]}")
    code, output = _invoke("build", "--model", "realesrgan", *option, "-o", tmp_path / "b")
    assert code == 1 and f"it builds {picked} here" in _one_error(output) and not (tmp_path / "b").exists()


def test_an_image_whose_header_claims_too_many_pixels_is_refused_by_the_size_guard(tmp_path, bundle):
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    # 16 bits per sample, 13500 x 13500 = 182 Mpx: beyond Pillow's decompression-bomb limit, so its header probe
    # used to fail and the image was decoded whole.
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 13500, 13500, 16, 2, 0, 0, 0))
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))
    start = time.perf_counter()
    code, output = _invoke("upscale", bomb, "-o", tmp_path / "o.png", "-e", bundle)
    assert code == 1 and "13500x13500 would need about" in _one_error(output) and time.perf_counter() - start < 30


def _declare_one_frame(path: Path) -> None:
    """Rewrites an APNG's animation control chunk to declare a single frame, as a hostile file may."""
    import struct
    import zlib

    data = bytearray(path.read_bytes())
    at = data.index(b"acTL")
    data[at + 4:at + 8] = struct.pack(">I", 1)
    data[at + 12:at + 16] = struct.pack(">I", zlib.crc32(bytes(data[at:at + 12])))
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind, message", [("apng", "is an animated PNG"), ("apng-declaring-one", "is an animated PNG"),
                                           ("webp", "has 2 frames"), ("tiff", "has 2 frames")])
def test_multi_frame_images_are_refused_not_cut_to_their_first_frame(tmp_path, bundle, kind, message):
    from PIL import Image

    frames = [Image.fromarray(np.full((20, 24, 3), v, np.uint8)) for v in (10, 200)]
    path = tmp_path / f"clip.{ {'webp': 'webp', 'tiff': 'tif'}.get(kind, 'png')}"
    frames[0].save(path, save_all=True, append_images=frames[1:], **({"lossless": True} if kind == "webp" else {}))
    if kind == "apng-declaring-one":
        _declare_one_frame(path)
    code, output = _invoke("upscale", path, "-o", tmp_path / "o.png", "-e", bundle)
    assert code == 1 and message in _one_error(output) and not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
def test_a_checkpoint_that_is_a_pipe_or_a_device_is_refused_at_once(tmp_path, special):
    checkpoint = Path(special)
    if special == "fifo":
        checkpoint = tmp_path / "RealESRGAN_x4plus.pth"
        os.mkfifo(checkpoint)
    start = time.perf_counter()
    code, output = _invoke(*RRDBNET_BUILD, "--checkpoint", checkpoint, "-o", tmp_path / "b")
    assert code == 1 and "is not a regular file" in _one_error(output) and time.perf_counter() - start < 30


def test_a_bundle_folder_whose_name_is_near_the_limit_is_built(tmp_path):
    folder = tmp_path / ("b" * 255)
    assert _invoke(*RRDBNET_BUILD, "-o", folder)[0] == 0 and (folder / MANIFEST_NAME).is_file()
    assert _invoke(*RRDBNET_BUILD, "-o", folder)[0] == 0  # replaced through a scratch folder of a shortened name
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name]
