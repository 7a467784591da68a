"""Patch-adaptive sampling: several step groups in one bundle, a difficulty per LR tile, each tile through
its group, and the steps map."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import make_image
from standin_bundle import random_tiles, write_bundle

from sr_export.cli import main
from sr_export.families.invsr.synthetic import mixed_image, region
from sr_export.metrics import psnr
from sr_runtime.backends.base import TILES, ChainId
from sr_runtime.errors import SRError
from sr_runtime.families.invsr.chain import steps_chain
from sr_runtime.families.invsr.difficulty import (
    DEFAULT_THRESHOLDS,
    assign_groups,
    check_thresholds,
    tile_difficulty,
)
from sr_runtime.families.invsr.image_loop import UpscaleSettings, upscale_array
from sr_runtime.images import read_image, write_image
from sr_runtime.pipeline import Upscaler


@pytest.mark.parametrize(("kind", "group"), [("flat", 0), ("noisy", 0), ("textured", 1), ("blurred", 2)])
def test_the_difficulty_policy_on_the_four_kinds_of_region(kind, group):
    difficulty = tile_difficulty(region(kind, 128).astype(np.float32))
    assert 0 <= difficulty <= 1
    assert assign_groups(np.array([difficulty]), DEFAULT_THRESHOLDS)[0] == group, difficulty


def test_thresholds_are_checked():
    check_thresholds((0.2, 0.6), 3)
    for thresholds, message in [((0.6, 0.2), "rise"), ((0.2,), "need 2"), ((0.2, 1.5), "rise")]:
        with pytest.raises(SRError, match=message):
            check_thresholds(thresholds, 3)


def _recording(upscaler: Upscaler, record: dict):
    """``run_tiles`` through the bundle that keeps each tile's output, by its LR pixels, with its group."""
    def run_tiles(lr, predictor_noise, vae_noise, group):
        out = upscaler.run_tiles(lr, predictor_noise, vae_noise, chain=steps_chain(group))
        for tile, sr in zip(lr, out, strict=True):
            record[tile.tobytes()] = (group, sr)
        return out
    return run_tiles


def test_each_tile_equals_the_uniform_run_of_its_group(tmp_path):
    upscaler = Upscaler.from_bundle(write_bundle(tmp_path / "b", steps=[1, 2, 3], batch=3))
    image = mixed_image(64)
    group_steps = upscaler.manifest.section.group_steps
    adaptive: dict = {}
    settings = UpscaleSettings(tile=16, batch=3, steps="auto")
    upscale_array(image, _recording(upscaler, adaptive), settings, group_steps, upscaler.manifest.section.geometry)
    used = {group for group, _ in adaptive.values()}
    assert len(used) >= 2  # the mixed image really splits into groups
    for group, steps in enumerate(group_steps):
        uniform: dict = {}
        upscale_array(image, _recording(upscaler, uniform), UpscaleSettings(tile=16, batch=3, steps=steps),
                      group_steps, upscaler.manifest.section.geometry)
        for key, (chosen, sr) in adaptive.items():
            if chosen == group:
                np.testing.assert_allclose(sr, uniform[key][1], rtol=0, atol=1e-6)


def test_a_chain_the_bundle_lacks_is_refused_in_one_line(tmp_path):
    upscaler = Upscaler.from_bundle(write_bundle(tmp_path / "b", steps=[1, 2, 3], batch=3))
    tiles = random_tiles(2)
    default = upscaler.run_tiles(*tiles)  # the first step group's chain
    np.testing.assert_array_equal(upscaler.run_tiles(*tiles, chain=steps_chain(0)), default)
    assert np.abs(upscaler.run_tiles(*tiles, chain=steps_chain(2)) - default).max() > 1e-4
    for chain in (steps_chain(3), TILES, ChainId("steps", 1, main_feed="x")):
        with pytest.raises(SRError, match=r"^the InvSR bundle has no chain .*: steps, index 0 to 2$"):
            upscaler.family.plan(chain, 2, 16, 16)
    with pytest.raises(SRError, match=r"no chain steps\[3\]"):
        upscaler.run_tiles(*tiles, chain=steps_chain(3))
    with pytest.raises(SRError, match="chain steps\\[1\\] is fed 'x' per tile batch, got lr, predictor_noise"):
        upscaler.run_tiles(*tiles, chain=ChainId("steps", 1, main_feed="x"))


def test_auto_is_the_default_of_a_multi_group_bundle_and_logs_the_steps_run(tmp_path, caplog):
    upscaler = Upscaler.from_bundle(write_bundle(tmp_path / "b", steps=[1, 2, 3], batch=4))
    image = mixed_image(64)
    with caplog.at_level(logging.INFO, logger="sr_runtime"):
        default = upscaler.upscale(image)
    assert "adaptive steps, 49 tiles:" in caplog.text and "tile-steps of the uniform 147" in caplog.text
    np.testing.assert_array_equal(default, upscaler.upscale(image, steps="auto"))
    seeded = upscaler.upscale(image, steps="auto", seed=3)
    np.testing.assert_array_equal(seeded, upscaler.upscale(image, steps="auto", seed=3))  # per-tile noise reproduces
    assert np.abs(seeded - default).max() > 1e-3
    assert np.abs(upscaler.upscale(image, steps=3) - default).max() > 1e-4  # the groups really differ


def test_the_steps_map(tmp_path):
    bundle = write_bundle(tmp_path / "b", steps=[1, 2, 3])
    write_image(tmp_path / "mixed.png", mixed_image(64))
    code = CliRunner().invoke(main, ["upscale", str(tmp_path / "mixed.png"), "-o", str(tmp_path / "sr.png"), "-e",
                                     str(bundle), "--steps", "auto", "--steps-map", str(tmp_path / "map.png")])
    assert code.exit_code == 0, code.output
    steps_map = read_image(tmp_path / "map.png").pixels
    assert steps_map.shape == (64, 64, 3)
    flat, blurred = steps_map[4:12, 4:12].mean(axis=(0, 1)), steps_map[52:60, 52:60].mean(axis=(0, 1))
    assert flat[1] > flat[0] and blurred[0] > blurred[1]  # green: fewest steps, red: most


@pytest.mark.parametrize(("args", "message"), [
    (["--steps", "4"], "steps 4: this model runs step groups of 1, 2, 3 steps"),
    (["--steps", "auto", "--adaptive-thresholds", "0.7,0.2"], "must rise"),
    (["--steps", "auto", "--adaptive-thresholds", "0.5"], "need 2 adaptive thresholds"),
    (["--steps", "2", "--adaptive-thresholds", "0.2,0.5"], "go with --steps auto"),
    (["--steps", "many"], "neither a number of steps nor 'auto'"),
])
def test_bad_adaptive_options_are_one_line(tmp_path, args, message):
    bundle = write_bundle(tmp_path / "b", steps=[1, 2, 3])
    write_image(tmp_path / "in.png", make_image(20, 20))
    result = CliRunner().invoke(main, ["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "o.png"), "-e",
                                       str(bundle), *args])
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output


def test_a_steps_map_path_for_several_images_needs_the_stem(tmp_path):
    bundle = write_bundle(tmp_path / "b", steps=[1, 2])
    for name in ("a.png", "b.png"):
        write_image(tmp_path / "in" / name, make_image(20, 20))
    args = ["upscale", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-e", str(bundle), "--steps-map"]
    result = CliRunner().invoke(main, [*args, str(tmp_path / "map.png")])
    assert result.exit_code == 1 and "put {stem} in the path" in result.output
    result = CliRunner().invoke(main, [*args, str(tmp_path / "maps" / "{stem}-steps.png")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == ["a-steps.png", "b-steps.png"]


# ---- the real networks: an adaptive bundle against the PyTorch reference --------------------------------

@pytest.mark.slow
def test_an_adaptive_bundle_matches_the_reference_in_auto_mode(tiny_checkpoints, tmp_path):
    from sr_export.builders.bundle_builder import BuildOptions, build_bundle
    from sr_export.families.invsr.reference import InvSRReference
    from sr_export.families.invsr.schedule import build_schedule
    from sr_export.families.invsr.source import resolve_source

    sd, pth, yaml = tiny_checkpoints
    source = resolve_source(sd, pth, yaml, ((200,), (200, 100, 50), (250, 200, 150, 100, 50)), report=lambda m: None)
    bundle = build_bundle(source, BuildOptions(backend="onnxruntime-cpu", tile=32, batch=2, output=tmp_path / "b"),
                          report=lambda m: None)
    upscaler = Upscaler.from_bundle(bundle)
    assert upscaler.manifest.section.group_steps == [1, 3, 5] and bundle.name == "b"
    reference = InvSRReference(source.components, [build_schedule(source.components.scheduler_config, g)
                                                   for g in source.groups])
    image = mixed_image(96)
    got = upscaler.upscale(image, seed=5)
    expected = reference.upscale(image, UpscaleSettings(tile=32, batch=2, steps="auto", seed=5))
    assert psnr(got, expected) >= 45


def test_groups_must_start_where_the_noise_predictor_was_trained(tiny_components):
    from sr_export.families.invsr.schedule import step_groups
    from sr_export.families.invsr.source import InvSRSource

    assert step_groups("adaptive") == ((200,), (200, 100, 50), (250, 200, 150, 100, 50))
    assert step_groups("3,1") == ((200,), (200, 100, 50))
    with pytest.raises(SRError, match="trained at"):
        InvSRSource(tiny_components, False, groups=((300, 150), (200,)))
    with pytest.raises(SRError, match="differ in their step counts"):
        step_groups("3,3")
    with pytest.raises(SRError, match="--timesteps sets one schedule"):
        step_groups("1,3", [300])


@pytest.mark.slow
def test_the_adaptive_bench_reports_time_and_steps(tiny_checkpoints, tmp_path):
    import json

    sd, pth, yaml = tiny_checkpoints
    result = CliRunner().invoke(main, ["bench", "adaptive", "--size", "64", "--tile", "32", "--sd-turbo", str(sd),
                                       "--noise-predictor", str(pth), "--noise-predictor-config", str(yaml),
                                       "--report", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    runs = {row["steps"]: row for row in data["runs"]}
    assert set(runs) == {1, 3, 5, "auto"} and runs[5]["tile_steps"] == 5 * 9
    assert runs[1]["tile_steps"] < runs["auto"]["tile_steps"] < runs[5]["tile_steps"]
    assert "vs uniform 5" in (tmp_path / "report" / "report.md").read_text()
