"""ResShift's runtime side without networks: the official chopping, the noise contract, the patch loop's
arithmetic, the options, the chain of engine calls and the memory estimate."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from sr_runtime.errors import SRError
from sr_runtime.families.resshift.chain import PRIOR_NOISE, ZERO_NOISE, feed_names, resshift_plan, step_noise
from sr_runtime.families.resshift.image_loop import batch_feeds, image_cost, plan_patches, upscale_image
from sr_runtime.families.resshift.noise import DEFAULT_SEED, PatchNoise
from sr_runtime.families.resshift.options import Chopping, ResShiftOptions, default_stride
from sr_runtime.families.resshift.section import ResShiftSection, SamplingStep
from sr_runtime.manifest import PipelineInfo

LATENT = 3


def _section(calls: int) -> ResShiftSection:
    steps = [SamplingStep(float(calls - 1 - i), 2.0, 0.5, 0.5, 0.25) for i in range(calls - 1)]
    return ResShiftSection("resshift-v3", LATENT, 64, 1.98, [*steps, SamplingStep(0.0, 1.0, 0.0, 1.0, 0.0)], {})


def _nearest_x4(feeds):
    """A stand-in chain: the padded LR patch, x4 nearest, in [-1, 1]."""
    return feeds["lr"].repeat(4, axis=2).repeat(4, axis=3) * 2 - 1


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((height, width, 3), dtype=np.float32)


@pytest.mark.parametrize(("height", "width", "chop", "stride", "ys", "xs", "patch", "padded"), [
    # ImageSpliterTh: starts every stride, the last moved back to end on the border, duplicates dropped
    (100, 150, 64, 48, [0, 36], [0, 48, 86], (64, 64), (64, 64)),
    (130, 70, 64, 64, [0, 64, 66], [0, 6], (64, 64), (64, 64)),
    # no side above the chop: one patch of the image's own size, padded as the official pads it
    (48, 80, 512, 448, [0], [0], (48, 80), (64, 128)),
    # a side above the chop, the other not: that side is one patch of its own length
    (40, 300, 128, 112, [0], [0, 112, 172], (40, 128), (64, 128)),
])
def test_patches_follow_the_official_splitter(height, width, chop, stride, ys, xs, patch, padded):
    layout = plan_patches(height, width, Chopping(chop, stride), 64)
    assert layout.starts == tuple((y, x) for y in ys for x in xs)  # row-major, height outer
    assert (layout.patch_height, layout.patch_width) == patch
    assert (layout.padded_height, layout.padded_width) == padded


def test_options_resolve_to_the_official_defaults_and_refuse_contradictions():
    assert ResShiftOptions().noise_seed == DEFAULT_SEED == 12345
    assert ResShiftOptions(seed=7).noise_seed == 7 and ResShiftOptions(zero_noise=True).noise_seed is None
    assert [default_stride(s) for s in (512, 256, 64, 128, 1)] == [448, 224, 48, 112, 1]
    assert ResShiftOptions().chopping(512) == Chopping(512, 448)
    assert ResShiftOptions(chop_size=96).chopping(512) == Chopping(96, 84)
    with pytest.raises(SRError, match="not both"):
        ResShiftOptions(seed=1, zero_noise=True)
    with pytest.raises(SRError, match="above the chop size"):
        ResShiftOptions(chop_size=64, chop_stride=65).chopping(512)
    for bad in ({"seed": -1}, {"chop_size": 0}, {"chop_stride": True}, {"zero_noise": 1}):
        with pytest.raises(SRError):
            ResShiftOptions(**bad)


def test_the_noise_stream_is_one_generator_per_image_patch_after_patch():
    section = _section(4)  # a patch takes the prior and 4 draws, the last discarded
    patches = np.zeros((3, 3, 64, 128), np.float32)
    feeds = batch_feeds(patches, PatchNoise(DEFAULT_SEED, 5), section)
    rng = np.random.default_rng(DEFAULT_SEED)
    stream = [rng.standard_normal((1, LATENT, 64, 128)).astype(np.float32) for _ in range(15)]
    assert list(feeds) == list(feed_names(4)) == ["lr", PRIOR_NOISE, step_noise(0), step_noise(1), step_noise(2)]
    for patch in range(3):
        draws = stream[5 * patch:5 * patch + 5]
        np.testing.assert_array_equal(feeds[PRIOR_NOISE][patch], draws[0][0])
        for i in range(3):
            np.testing.assert_array_equal(feeds[step_noise(i)][patch], draws[i + 1][0])
    one_step = batch_feeds(patches[:1], PatchNoise(5, 2), _section(1))  # SinSR: the prior and a dropped draw
    assert list(one_step) == ["lr", PRIOR_NOISE]
    zero = batch_feeds(patches[:1], PatchNoise(None, 5), section)
    assert all(not v.any() for k, v in zero.items() if k != "lr")


def test_batching_patches_does_not_change_what_each_patch_gets():
    image = _image(100, 150)
    seen = {1: [], 3: []}
    for batch, record in seen.items():

        def run(feeds, record=record):
            record.extend({k: v[i] for k, v in feeds.items()} for i in range(len(feeds["lr"])))
            return _nearest_x4(feeds)

        upscale_image(image, run, _section(4), ResShiftOptions(seed=3), Chopping(64, 48), batch)
    assert len(seen[1]) == len(seen[3]) == 6
    for a, b in zip(seen[1], seen[3], strict=True):
        assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(("height", "width", "chopping"), [(48, 80, Chopping(512, 448)), (100, 150, Chopping(64, 48)),
                                                          (10, 21, Chopping(512, 448))])
def test_crop_clamp_and_averaging_reproduce_the_image(height, width, chopping):
    """Every patch returns its LR pixels x4: cropping, placing and averaging must give back the image
    exactly (a 10-px side is padded to 64 by repeated reflection, where torch's pad would stop)."""
    image = _image(height, width)
    sr = upscale_image(image, _nearest_x4, _section(1), ResShiftOptions(), chopping, 2)
    np.testing.assert_array_equal(sr, image.repeat(4, axis=0).repeat(4, axis=1))


def test_outputs_are_clamped_before_they_are_averaged():
    image = _image(64, 100)
    # Patch outputs of 3 and -1 would average to 1 unclamped; clamped first they give 0.5 -> 0.75.
    outputs = iter([np.full((1, 3, 256, 256), 3.0, np.float32), np.full((1, 3, 256, 256), -1.0, np.float32)])
    sr = upscale_image(image, lambda feeds: next(outputs), _section(1), ResShiftOptions(), Chopping(64, 48), 1)
    assert sr[:, 0].min() == 1.0 and sr[:, -1].max() == 0.0
    overlap = sr[:, 4 * 36:4 * 64]  # covered by both patches
    np.testing.assert_array_equal(overlap, np.full_like(overlap, 0.5))


def test_the_chain_binds_each_step_to_its_constants_and_draw():
    section = _section(4)
    plan = resshift_plan(section, 2, 64, 128)
    assert [c.graph for c in plan.calls] == ["vq_encoder"] + ["unet_step"] * 4 + ["vq_decoder"]
    assert plan.feeds == feed_names(4) and plan.result == "image"
    steps = plan.calls[1:5]
    assert [s.inputs["noise"] for s in steps] == [step_noise(0), step_noise(1), step_noise(2), ZERO_NOISE]
    latents = [plan.calls[0].outputs["latent"], *(s.outputs["latent_next"] for s in steps)]
    assert [s.inputs["latent"] for s in steps] == latents[:-1] and plan.calls[-1].inputs["latent"] == latents[-1]
    assert all(s.inputs["latent"] != s.outputs["latent_next"] for s in steps)  # no call reads what it writes
    for i, (call, step) in enumerate(zip(steps, section.steps, strict=True)):
        assert plan.constants[call.inputs["noise_std"]][0] == np.float32(step.noise_std)
        assert plan.constants[call.inputs["timestep"]][0] == step.timestep == 3 - i
    assert plan.constants[ZERO_NOISE].shape == (2, LATENT, 64, 128) and not plan.constants[ZERO_NOISE].any()
    assert plan.sizes["out_height"] == 256 and plan.sizes["latent_channels"] == LATENT


def test_a_section_whose_last_step_has_noise_is_malformed():
    section = _section(2)
    assert section.problem(PipelineInfo("resshift", 4, 100, 1)) is None
    assert section.max_patch(PipelineInfo("resshift", 4, 100, 1)) == 128
    section.steps[-1].noise_std = 0.5
    assert "discarded" in section.problem(PipelineInfo("resshift", 4, 100, 1))


@pytest.mark.parametrize(("height", "width", "chopping", "batch"), [(230, 170, Chopping(128, 112), 2),
                                                                    (300, 410, Chopping(256, 224), 4)])
def test_the_estimate_covers_the_loops_peak_and_not_much_more(height, width, chopping, batch):
    image = _image(height, width)
    section = _section(4)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        upscale_image(image, _nearest_x4, section, ResShiftOptions(), chopping, batch)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    cost = image_cost(height, width, chopping, section, batch)
    assert peak <= cost.memory <= 1.5 * peak
    assert cost.tiles == len(plan_patches(height, width, chopping, 64).starts)
