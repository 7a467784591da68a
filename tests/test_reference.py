"""The PyTorch reference against an independent re-statement of the official sampler.

The oracle below follows ``pipeline_stable_diffusion_inversion_sr.py`` call by call with diffusers'
public objects: the custom ``retrieve_timesteps`` (t = T - 1 written into the scheduler, σ from the
training table), ``vae.encode(...).latent_dist``, ``scheduler.add_noise``, ``scale_model_input``,
``scheduler.step`` and ``vae.decode``. The reference instead runs our own stage modules (the ones
that are exported to ONNX), so agreement checks the stages, not a copy of themselves.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers import EulerDiscreteScheduler
from helpers import make_image

from sr_export.families.invsr.reference import InvSRReference
from sr_export.families.invsr.schedule import DEFAULT_TIMESTEPS, build_schedule
from sr_runtime.families.invsr.image_loop import UpscaleSettings
from sr_runtime.families.invsr.noise import PosteriorNoise

# fp32 on both sides; only the order of a few float operations differs.
MAX_ABS = 2e-5


def official_scheduler(config: dict, cli_timesteps) -> EulerDiscreteScheduler:
    """The official custom retrieve_timesteps: set_timesteps is never called."""
    scheduler = EulerDiscreteScheduler.from_config(config)
    table = scheduler.sigmas.flip(0)[1:]  # σ_0 .. σ_999
    timesteps = torch.tensor(cli_timesteps, dtype=torch.float32) - 1
    scheduler.timesteps = timesteps
    scheduler.sigmas = torch.cat([table[timesteps.long()], torch.zeros(1)]).float()
    scheduler._step_index = None
    scheduler._begin_index = None
    return scheduler


@torch.no_grad()
def official_tiles(components, cli_timesteps, lr: np.ndarray, np_noise: np.ndarray, vae_noise: np.ndarray):
    sd = components.sd_turbo
    scheduler = official_scheduler(sd.scheduler_config, cli_timesteps)
    image = torch.from_numpy(lr)
    image_up = F.interpolate(image, size=(lr.shape[2] * 4, lr.shape[3] * 4), mode="bicubic") * 2 - 1
    t1 = scheduler.timesteps[:1].repeat(len(lr))
    mean, logvar = torch.chunk(components.noise_predictor.moments(image, t1), 2, dim=1)
    noise = mean + torch.exp(0.5 * logvar.clamp(-30, 20)) * torch.from_numpy(np_noise)
    posterior = sd.vae.encode(image_up).latent_dist
    z_lr = sd.vae.config.scaling_factor * (posterior.mean + posterior.std * torch.from_numpy(vae_noise))
    latents = scheduler.add_noise(z_lr, noise, t1)
    from sr_export.families.invsr.prompt import POSITIVE_PROMPT
    from sr_export.sd.prompts import encode_prompt

    embeds = encode_prompt(sd, POSITIVE_PROMPT).expand(len(lr), -1, -1)
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(latents, t)
        eps = sd.unet(model_input, t, encoder_hidden_states=embeds, return_dict=False)[0]
        latents = scheduler.step(eps, t, latents, return_dict=False)[0]
    image = sd.vae.decode(latents / sd.vae.config.scaling_factor, return_dict=False)[0]
    return (image / 2 + 0.5).clamp(0, 1).numpy()


def _reference(components, cli_timesteps) -> InvSRReference:
    return InvSRReference(components, build_schedule(components.scheduler_config, cli_timesteps))


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5])
def test_default_timesteps_match_the_official_sampler(tiny_components, steps):
    cli = DEFAULT_TIMESTEPS[steps]
    lr = np.stack([make_image(32, 32, seed=s).transpose(2, 0, 1) for s in range(2)])
    zeros = np.zeros(tiny_components.geometry.latent_shape(2, 32), np.float32)
    ours = _reference(tiny_components, cli).run_tiles(lr, zeros, zeros)
    theirs = official_tiles(tiny_components, cli, lr, zeros, zeros)
    assert ours.shape == (2, 3, 128, 128)
    assert np.abs(ours - theirs).max() <= MAX_ABS
    assert ours.std() > 0.01  # a real image, not a constant


def test_user_timesteps_and_posterior_noise_match_the_official_sampler(tiny_components):
    cli = (700, 333, 20)
    lr = make_image(32, 32, seed=3).transpose(2, 0, 1)[None]
    np_noise, vae_noise = PosteriorNoise(seed=7, steps=3).draw(tiny_components.geometry.latent_shape(1, 32))
    ours = _reference(tiny_components, cli).run_tiles(lr, np_noise, vae_noise)
    theirs = official_tiles(tiny_components, cli, lr, np_noise, vae_noise)
    assert np.abs(ours - theirs).max() <= MAX_ABS
    means = _reference(tiny_components, cli).run_tiles(lr, np.zeros_like(np_noise), np.zeros_like(vae_noise))
    assert np.abs(ours - means).max() > 1e-3  # the noise inputs are really used


def test_one_call_at_exactly_the_tile_size(tiny_components):
    """An image of exactly the tile size goes through one call, no padding and no blending."""
    image = make_image(32, 32, seed=4)
    reference = _reference(tiny_components, (200,))
    whole = reference.upscale(image, UpscaleSettings(tile=32, batch=4))
    zeros = np.zeros(tiny_components.geometry.latent_shape(1, 32), np.float32)
    direct = official_tiles(tiny_components, (200,), image.transpose(2, 0, 1)[None], zeros, zeros)
    assert np.abs(whole - direct[0].transpose(1, 2, 0)).max() <= MAX_ABS


def test_tiled_upscale_covers_the_image_and_reports_progress(tiny_components):
    image = make_image(45, 70, seed=5)
    seen = []
    out = _reference(tiny_components, (200,)).upscale(
        image, UpscaleSettings(tile=32, batch=3), on_tiles_done=lambda done, total: seen.append((done, total))
    )
    assert out.shape == (180, 280, 3) and out.dtype == np.float32
    assert np.isfinite(out).all() and 0 <= out.min() and out.max() <= 1
    assert seen[-1][0] == seen[-1][1] and len(seen) == -(-seen[-1][1] // 3)


# ---- the pad multiple (the official mod_lq) follows the loaded configs ------------------------------------

@pytest.fixture(scope="module")
def shallow_unet(tmp_path_factory):
    """A tiny SD-Turbo whose UNet has 2 levels: the official mod_lq is (8 // 4) * 2 = 4, not SD-Turbo's 16."""
    from sr_export.families.invsr.random_checkpoints import (
        write_random_noise_predictor,
        write_random_sd_turbo,
    )
    from sr_export.families.invsr.reference import load_components

    root = tmp_path_factory.mktemp("unet2")
    sd = write_random_sd_turbo(root / "sd-turbo", seed=2, unet_levels=2)
    pth, yaml = write_random_noise_predictor(root / "np", seed=2)
    return load_components(sd, pth, yaml)


def official_sample_func(components, cli_timesteps, image: np.ndarray, tile: int, pad_multiple_override=None):
    """``sampler_invsr.sample_func`` restated (posterior means, no colour fix): mod_lq from the VAE's and
    UNet's block_out_channels, the small-image reflect loop, bottom/right reflect padding to mod_lq, tiles
    at stride tile // 2 (``ImageSpliterTh``), Gaussian-weighted blend, crop."""
    from sr_runtime.families.invsr.tiling import gaussian_weights_1d

    sd = components.sd_turbo
    vae_sf = 2 ** (len(sd.vae.config.block_out_channels) - 1)
    diffusion_sf = 2 ** (len(sd.unet.config.block_out_channels) - 1)
    mod_lq = pad_multiple_override or vae_sf // 4 * diffusion_sf
    im = torch.from_numpy(image.transpose(2, 0, 1).copy())[None]
    h0, w0 = im.shape[-2:]
    top = left = 0
    while min(im.shape[-2:]) < tile:
        h, w = im.shape[-2:]
        up, lf = max(min((tile - h) // 2, h - 1), 0), max(min((tile - w) // 2, w - 1), 0)
        down, right = max(min(tile - h - up, h - 1), 0), max(min(tile - w - lf, w - 1), 0)
        im = F.pad(im, (lf, right, up, down), mode="reflect")
        top, left = top + up, left + lf
    if im.shape[-2:] != (tile, tile):
        h, w = im.shape[-2:]
        im = F.pad(im, (0, -(-w // mod_lq) * mod_lq - w, 0, -(-h // mod_lq) * mod_lq - h), mode="reflect")
    H, W = im.shape[-2:]

    def starts(length):
        return [0] if length <= tile else list(dict.fromkeys(min(s, length - tile) for s in range(0, length, tile // 2)))

    gauss = gaussian_weights_1d(4 * tile)
    weight = np.outer(gauss, gauss)
    acc, norm = np.zeros((3, 4 * H, 4 * W)), np.zeros((4 * H, 4 * W))
    zeros = np.zeros(components.geometry.latent_shape(1, tile), np.float32)
    for y in starts(H):
        for x in starts(W):
            patch = im[:, :, y:y + tile, x:x + tile].numpy()
            sr = official_tiles(components, cli_timesteps, patch, zeros, zeros)[0]
            acc[:, 4 * y:4 * y + 4 * tile, 4 * x:4 * x + 4 * tile] += sr * weight
            norm[4 * y:4 * y + 4 * tile, 4 * x:4 * x + 4 * tile] += weight
    out = (acc / norm)[:, 4 * top:4 * (top + h0), 4 * left:4 * (left + w0)]
    return np.clip(out, 0, 1).transpose(1, 2, 0)


def test_the_pad_multiple_follows_the_unet_depth_as_in_the_official_sampler(shallow_unet):
    assert (shallow_unet.geometry.vae_factor, shallow_unet.geometry.pad_multiple) == (8, 4)
    image = make_image(50, 42, seed=6)  # 50 x 42: padded to 52 x 44 with mod_lq 4, to 64 x 48 with 16
    ours = _reference(shallow_unet, (200,)).upscale(image, UpscaleSettings(tile=16, batch=4))
    official = official_sample_func(shallow_unet, (200,), image, tile=16)
    assert ours.shape == official.shape == (200, 168, 3)
    assert np.abs(ours - official).max() <= MAX_ABS
    hard_coded_16 = official_sample_func(shallow_unet, (200,), image, tile=16, pad_multiple_override=16)
    assert np.abs(ours - hard_coded_16).max() > 1e-3  # the multiple matters: the tiling differs


def test_a_tile_that_is_no_multiple_of_the_pad_multiple_is_refused(tiny_components):
    from sr_runtime.errors import SRError

    with pytest.raises(SRError, match="multiple of 16"):
        _reference(tiny_components, (200,)).upscale(make_image(40, 40), UpscaleSettings(tile=40, batch=1))
