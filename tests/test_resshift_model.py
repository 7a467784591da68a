"""ResShift / SinSR networks, configs, schedule and loaders: the official sizes and tables, the quirks of the
official Swin mask, and one-line refusals of anything that is not an official config or checkpoint."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sr_export.families.resshift.autoencoder import VQModelTorch
from sr_export.families.resshift.config import load_config
from sr_export.families.resshift.loaders import load_autoencoder, load_denoiser
from sr_export.families.resshift.official_configs import MODELS, OfficialCode
from sr_export.families.resshift.random_checkpoints import official_layout_config, write_random_model
from sr_export.families.resshift.schedule import sampling_steps, sqrt_eta_schedule
from sr_export.families.resshift.source import resolve_source
from sr_export.families.resshift.swin import (
    SwinTransformerBlock,
    shifted_window_mask,
    window_partition,
    window_reverse,
)
from sr_export.families.resshift.unet import UNetModelSwin
from sr_runtime.errors import SRError

PAPER_PARAMS = 118_593_583


def _quiet(_message: str) -> None:
    pass


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path, Path]:
    return write_random_model(tmp_path_factory.mktemp("tiny-v3"), "resshift-v3", seed=2)


@pytest.mark.parametrize("model", list(MODELS))
def test_the_official_configs_build_the_released_networks(model):
    config = load_config(MODELS[model])
    with torch.device("meta"):
        unet, vq = UNetModelSwin(config.unet), VQModelTorch(config.vq)
    assert sum(p.numel() for p in unet.parameters()) == PAPER_PARAMS
    # state dicts: 564 UNet entries with the Swin buffers, 205 autoencoder entries
    assert len(unet.state_dict()) == 564 and len(vq.state_dict()) == 205
    assert sum(p.numel() for p in vq.parameters()) == 55_322_782
    assert (config.pad_multiple, config.vq.embed_dim, config.unet.in_channels) == (64, 3, 6)


def _table(model: str, field: str) -> list[float]:
    spec = MODELS[model]
    _, steps = sampling_steps(load_config(spec).diffusion, spec.code, spec.one_step)
    return [round(getattr(step, field), 6) for step in steps]


def test_the_schedules_are_the_official_tables():
    # v3 (T = 4, min noise 0.2): t = 3 .. 0
    assert _table("resshift-v3", "timestep") == [3, 2, 1, 0]
    assert _table("resshift-v3", "input_divisor") == [2.218197, 1.82176, 1.442914, 1.019804]
    assert _table("resshift-v3", "coef_latent") == [0.591473, 0.466619, 0.036969, 0.0]
    assert _table("resshift-v3", "coef_x0") == [0.408527, 0.533381, 0.963031, 1.0]
    assert _table("resshift-v3", "noise_std") == [0.973292, 0.759683, 0.196268, 0.0]
    v1 = _table("resshift-v1", "noise_std")
    assert len(v1) == 15 and v1[-1] == 0.0 and _table("resshift-v1", "timestep") == list(range(14, -1, -1))
    assert v1[0] == 0.721578 and _table("resshift-v1", "input_divisor")[-1] == 1.0008
    # SinSR: one call at t = 14 of the 15-step schedule, returning its x0 prediction
    assert _table("sinsr", "timestep") == [14] and _table("sinsr", "coef_x0") == [1.0]
    assert _table("sinsr", "coef_latent") == _table("sinsr", "noise_std") == [0.0]
    assert _table("sinsr", "input_divisor") == _table("resshift-v1", "input_divisor")[:1]
    sqrt_etas = sqrt_eta_schedule(load_config(MODELS["resshift-v1"]).diffusion, OfficialCode.RESSHIFT)
    assert sqrt_etas[0] == pytest.approx(0.02) and sqrt_etas[-1] == pytest.approx(0.99)


def test_sinsr_caps_the_first_eta_and_respacing_keeps_every_third_step():
    spec = MODELS["sinsr"]
    config = load_config(spec)
    floor = type(config.diffusion)(**{**config.diffusion.__dict__, "min_noise_level": 0.1, "kappa": 1.0})
    assert sqrt_eta_schedule(floor, OfficialCode.RESSHIFT)[0] == pytest.approx(0.1)
    assert sqrt_eta_schedule(floor, OfficialCode.SINSR)[0] == pytest.approx(0.001**0.5)
    spaced = type(config.diffusion)(**{**config.diffusion.__dict__, "timestep_respacing": 5})
    _, steps = sampling_steps(spaced, OfficialCode.RESSHIFT, one_step=False)
    assert [s.timestep for s in steps] == [12, 9, 6, 3, 0] and steps[-1].noise_std == 0


def test_official_yaml_is_read_with_its_interpolations(tmp_path):
    layout = official_layout_config(MODELS["resshift-v3"], "full")
    assert layout["model"]["params"]["out_channels"] == "${autoencoder.params.embed_dim}"
    layout["trainer"] = {"target": "trainer.TrainerDifIRLPIPS", "note": "x${diffusion.params.steps}"}
    path = tmp_path / "journal.yaml"
    path.write_text(yaml.safe_dump(layout))
    config = load_config(MODELS["resshift-v3"], path)
    assert config.unet.out_channels == 3 and config.params["model"]["out_channels"] == 3
    assert config.diffusion.steps == 4


def _broken(tmp_path: Path, edit) -> Path:
    layout = official_layout_config(MODELS["resshift-v1"], "full")
    edit(layout)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(layout))
    return path


@pytest.mark.parametrize(("edit", "message"), [
    (lambda c: c["model"]["params"].update(use_checkpoint=True), "unknown key.*use_checkpoint"),
    (lambda c: c["diffusion"]["params"].update(predict_type="epsilon"), "predict_type must be 'xstart'"),
    (lambda c: c["model"]["params"].update(lq_size=256), "lq_size must be 64"),
    (lambda c: c["autoencoder"]["params"]["ddconfig"].update(ch_mult=[1, 2, 4, 4]), "downsamples by 8"),
    (lambda c: c["model"]["params"].update(model_channels=100), "multiples of 32"),
    (lambda c: c["model"].update(target="models.unet.UNetModel"), "model.target"),
    (lambda c: c["model"]["params"].update(out_channels="${autoencoder.params.nothing}"), "names nothing"),
    (lambda c: c["model"]["params"].update(out_channels="${model.params.out_channels}"), "refers to itself"),
    (lambda c: c.pop("diffusion"), "needs model, autoencoder, diffusion"),
    (lambda c: c["diffusion"]["params"].update(steps=1.5), "steps must be an integer"),
    # Extreme values the schedule cannot take: they overflowed, or built bundles whose constants were infinite.
    (lambda c: c["diffusion"]["params"].update(kappa=1e300), "kappa must be a number above 0.001 and at most 100"),
    (lambda c: c["diffusion"]["params"].update(min_noise_level=1e-310), "min_noise_level must be a number above"),
    (lambda c: c["diffusion"]["params"].update(etas_end=1e300), "etas_end must be a number above"),
    (lambda c: c["diffusion"]["params"].update(scale_factor=1e-300), "scale_factor must be a number above"),
    (lambda c: c["model"]["params"].update(num_res_blocks=[2, 2, 100_000, 2]), "num_res_blocks must be a list"),
])
def test_configs_the_official_code_would_not_run_are_one_line_errors(tmp_path, edit, message):
    with pytest.raises(SRError, match=message):
        load_config(MODELS["resshift-v1"], _broken(tmp_path, edit))


def test_a_sinsr_config_takes_its_own_unet_keys(tmp_path):
    with pytest.raises(SRError, match="unknown key.*lq_size"):
        load_config(MODELS["sinsr"], _broken(tmp_path, lambda c: c["model"]["params"].update(lq_size=64)))


def _official_mask(height: int, width: int, window: int, shift: int) -> np.ndarray:
    """The official calculate_mask's arithmetic: slices applied to dims 1 and 2 of a (1, 1, H, W) map,
    windows flattened after a (0, 2, 3, 1) permute."""
    labels = np.zeros((1, 1, height, width))
    cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for count, (h, w) in enumerate(itertools.product(cuts, cuts)):
        labels[:, h, w, :] = count
    windows = labels.reshape(1, 1, height // window, window, width // window, window).transpose(0, 2, 4, 3, 5, 1)
    flat = windows.reshape(-1, window, window, 1).transpose(0, 2, 3, 1).reshape(-1, window * window)
    return np.where(flat[:, None, :] != flat[:, :, None], -100.0, 0.0)


@pytest.mark.parametrize(("height", "width", "window", "shift"), [(64, 64, 8, 4), (64, 128, 8, 4), (24, 40, 8, 4),
                                                                  (16, 16, 8, 2), (8, 8, 8, 4)])
def test_the_window_mask_is_the_official_one_at_every_size(height, width, window, shift):
    mask = shifted_window_mask(height, width, window, shift).numpy()
    np.testing.assert_array_equal(mask, _official_mask(height, width, window, shift))
    assert not mask[:-(width // window)].any()  # only the last window row is masked (the official labels rows)


def test_windows_split_and_merge_at_any_size_and_batch():
    x = torch.randn(3, 5, 24, 40)
    windows = window_partition(x, 8)
    assert windows.shape == (3 * 15, 64, 5)
    torch.testing.assert_close(window_reverse(windows, 8, 24, 40), x, rtol=0, atol=0)


def test_shifted_blocks_store_the_official_construct_size_mask(tiny):
    unet = load_denoiser(tiny[0], load_config(MODELS["resshift-v3"], tiny[2]))
    blocks = [b for b in unet.modules() if isinstance(b, SwinTransformerBlock)]
    # levels 64, 32, 16, 8 down, the middle at 8, then up: every second block shifts, but never at the 8-px
    # level, which is a single window of its own size
    assert [b.shift for b in blocks] == [0, 4] * 3 + [0, 0] * 3 + [0, 4] * 3
    np.testing.assert_array_equal(blocks[1].attn_mask.numpy(), _official_mask(64, 64, 8, 4))
    assert "attn_mask" not in dict(blocks[0].named_buffers())


def test_denoisers_load_through_wrappers_prefixes_and_extra_keys(tiny, tmp_path):
    config = load_config(MODELS["resshift-v3"], tiny[2])
    flat = load_denoiser(tiny[0], config).state_dict()
    wrapped, _, _ = write_random_model(tmp_path, "resshift-v3", seed=2, wrapper="state_dict", prefix="module._orig_mod.")
    state = torch.load(wrapped, weights_only=True)
    state["state_dict"]["module._orig_mod.extra.weight"] = torch.zeros(1)  # the official loaders ignore extras
    torch.save(state, wrapped)
    loaded = load_denoiser(wrapped, config).state_dict()
    assert loaded.keys() == flat.keys() and all(torch.equal(loaded[k], flat[k]) for k in flat)


def test_every_key_is_required_buffers_included(tiny, tmp_path):
    config = load_config(MODELS["resshift-v3"], tiny[2])
    state = torch.load(tiny[0], weights_only=True)
    missing = "input_blocks.1.1.blocks.1.attn_mask"
    del state[missing]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(SRError, match=f"lacks 1 keys \\({missing}\\)"):
        load_denoiser(tmp_path / "missing.pth", config)
    with pytest.raises(SRError, match="lacks 242 keys .* --config"):  # the tiny file, the full official config
        load_denoiser(tiny[0], load_config(MODELS["resshift-v3"]))
    wider = _broken(tmp_path, lambda c: c["model"]["params"].update(official_layout_config(
        MODELS["resshift-v3"])["model"]["params"], model_channels=64, out_channels=3))
    with pytest.raises(SRError, match="time_embed.0.weight has shape \\(128, 32\\).*needs \\(256, 64\\).*--config"):
        load_denoiser(tiny[0], load_config(MODELS["resshift-v1"], wider))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(SRError, match="not a PyTorch checkpoint"):
        load_autoencoder(tmp_path / "junk.pth", config)


def test_checkpoints_come_in_pairs_and_the_demo_says_so(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./weights here
    with pytest.raises(SRError, match="no autoencoder"):
        resolve_source("resshift-v3", tiny[0], None, None, report=_quiet)
    with pytest.raises(SRError, match="--config describes checkpoints"):
        resolve_source("resshift-v3", None, None, tiny[2], report=_quiet)
    with pytest.raises(SRError, match="pass --checkpoint PTH and --autoencoder PTH"):
        resolve_source("sinsr", None, None, None, allow_demo=False, report=_quiet)
    said = []
    demo = resolve_source("sinsr", None, None, None, report=said.append)
    assert demo.demo and demo.name == "sinsr-demo" and "DEMO" in said[0] and "NOT meaningful" in said[0]
    (tmp_path / "weights").mkdir()
    for src, name in ((tiny[0], "resshift_realsrx4_s4_v3.pth"), (tiny[1], "autoencoder_vq_f4.pth")):
        (tmp_path / "weights" / name).write_bytes(src.read_bytes())
    found = resolve_source("resshift-v3", None, None, tiny[2], report=_quiet)
    assert not found.demo and found.checkpoints["denoiser"].path == "weights/resshift_realsrx4_s4_v3.pth"
