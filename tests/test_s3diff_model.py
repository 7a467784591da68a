"""S3Diff's loaders and modules on tiny random checkpoints in the official formats: what s3diff.pkl and de_net.pth
must hold, the modulated LoRA against the official formula, the block assignment, the one-step scheduler."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from sr_export.families.s3diff.checkpoint import load_s3diff_checkpoint
from sr_export.families.s3diff.components import assemble, load_components
from sr_export.families.s3diff.de_net import load_de_net
from sr_export.families.s3diff.lora import ModulatedLoRA
from sr_export.families.s3diff.merge import MergedUNetStage
from sr_export.families.s3diff.random_checkpoints import write_random_s3diff
from sr_export.families.s3diff.stages import UNetStage
from sr_export.sd.loading import load_sd
from sr_export.sd.models import SD_TURBO
from sr_export.sd.one_step import one_step
from sr_runtime.errors import SRError


@pytest.fixture(scope="session")
def s3diff_files(tmp_path_factory):
    """Tiny SD-Turbo, s3diff.pkl and de_net.pth, written once per run."""
    return write_random_s3diff(tmp_path_factory.mktemp("tiny-s3diff"), seed=2)


@pytest.fixture(scope="session")
def s3diff_components(s3diff_files):
    return load_components(s3diff_files.sd_turbo, s3diff_files.checkpoint, s3diff_files.de_net)


def _rewritten(files, tmp_path: Path, change) -> Path:
    data = torch.load(files.checkpoint, weights_only=True)
    change(data)
    path = tmp_path / "s3diff.pkl"
    torch.save(data, path)
    return path


@pytest.fixture(scope="session")
def sd_turbo(s3diff_files):
    return load_sd(s3diff_files.sd_turbo, SD_TURBO)


def _load(files, sd_turbo, checkpoint=None, de_net=None):
    """The loaders' path, on copies of the once-loaded UNet and VAE (what the checkpoint changes)."""
    sd = dataclasses.replace(sd_turbo, unet=copy.deepcopy(sd_turbo.unet), vae=copy.deepcopy(sd_turbo.vae))
    return assemble(sd, load_s3diff_checkpoint(checkpoint or files.checkpoint), load_de_net(de_net or files.de_net))


def test_the_official_lora_layers_are_adapted(s3diff_components):
    sd = s3diff_components.sd_turbo
    unet = [name for name, m in sd.unet.named_modules() if isinstance(m, ModulatedLoRA)]
    vae = [name for name, m in sd.vae.named_modules() if isinstance(m, ModulatedLoRA)]
    assert "conv_out" in unet and "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj" in unet
    assert "conv_in" not in unet  # retrained in full instead
    assert vae and all(name.startswith("encoder.") for name in vae) and "encoder.mid_block.attentions.0.to_out.0" in vae


# S3Diff.forward's assignment: down_blocks.i -> i, mid_block -> 4 (UNet) or the one before last (VAE: 4 of 6),
# up_blocks.i -> 5 + i, anything else -> the last.
OFFICIAL_BLOCKS = {
    "unet": {"down_blocks.1.resnets.0.conv1": 1, "down_blocks.2.attentions.0.proj_in": 2,
             "mid_block.attentions.0.transformer_blocks.0.attn1.to_q": 4, "up_blocks.0.resnets.1.conv2": 5,
             "up_blocks.3.attentions.0.transformer_blocks.0.ff.net.2": 8, "conv_out": 9},
    "vae": {"encoder.conv_in": 5, "encoder.down_blocks.3.resnets.1.conv2": 3, "encoder.down_blocks.0.downsamplers.0.conv": 0,
            "encoder.mid_block.attentions.0.to_out.0": 4, "encoder.mid_block.resnets.1.conv1": 4, "encoder.conv_out": 5},
}


def test_each_layer_reads_its_official_block(s3diff_components):
    sd = s3diff_components.sd_turbo
    for network, model in (("unet", sd.unet), ("vae", sd.vae)):
        for name, block in OFFICIAL_BLOCKS[network].items():
            assert model.get_submodule(name).block == block, name


def test_a_lora_layer_is_the_official_modulated_forward(s3diff_components):
    """my_lora_fwd: result + lora_B(einsum(lora_A(x), de_mod)) * scaling, de_mod broadcast over the batch."""
    sd = s3diff_components.sd_turbo
    conv = sd.unet.get_submodule("down_blocks.0.resnets.0.conv1")
    linear = sd.unet.get_submodule("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k")
    deg = torch.tensor([[0.3, 0.8]])
    matrices = s3diff_components.unet_modulation(deg)
    s3diff_components.unet_context.matrices = matrices.expand(2, -1, -1, -1)
    de_mod = matrices[:, 0]
    with torch.no_grad():
        x = torch.randn(2, conv.base.in_channels, 8, 8)
        assert conv.scale == 8 / 8  # lora_alpha 8 over the tiny rank 8
        want = conv.base(x) + conv.up(torch.einsum("...khw,...kr->...rhw", conv.down(x), de_mod)) * conv.scale
        torch.testing.assert_close(conv(x), want, rtol=1e-5, atol=1e-6)
        tokens = torch.randn(2, 77, linear.base.in_features)
        want = linear.base(tokens) + linear.up(torch.einsum("...lk,...kr->...lr", linear.down(tokens), de_mod)) * 1.0
        torch.testing.assert_close(linear(tokens), want, rtol=1e-5, atol=1e-6)


def test_the_one_step_is_ddpm_of_sd_turbos_config(s3diff_components):
    from diffusers import DDPMScheduler

    config = s3diff_components.sd_turbo.scheduler_config
    scheduler = DDPMScheduler.from_config(config)
    scheduler.set_timesteps(1)
    sample, eps = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    step = s3diff_components.one_step
    want = scheduler.step(eps, torch.tensor([999]), sample).prev_sample
    x0 = (sample - step.sqrt_beta_prod * eps) / step.sqrt_alpha_prod
    torch.testing.assert_close(x0, want, rtol=1e-6, atol=1e-5)  # the step's own variance noise is 1e-10
    clipped = one_step({**config, "clip_sample": True, "clip_sample_range": 2.5}, 999, "S3Diff", Path("x"))
    assert clipped.clip_sample_range == 2.5 and step.clip_sample_range is None


def test_a_pickle_with_code_is_refused_in_one_line(s3diff_files, sd_turbo, tmp_path):
    path = tmp_path / "s3diff.pkl"
    torch.save({"rank_unet": 8, "payload": shutil.rmtree}, path)
    with pytest.raises(SRError) as err:
        _load(s3diff_files, sd_turbo, checkpoint=path)
    assert str(path) in str(err.value) and "\n" not in str(err.value) and "shutil" in str(err.value)
    path.write_bytes(pickle.dumps({"a": 1}, protocol=2)[:-3])
    with pytest.raises(SRError, match="not a PyTorch checkpoint"):
        _load(s3diff_files, sd_turbo, checkpoint=path)


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.pop("w"), "no 'w' entry"),
    (lambda d: d.update(rank_unet="32"), "not a positive LoRA rank"),
    (lambda d: d.update(rank_unet=16), "wrong LoRA rank"),
    (lambda d: d.update(rank_vae=8), "wrong LoRA rank"),
    (lambda d: d["state_dict_unet"].update({"conv_in.extra": torch.zeros(1)}), "no targeted layer takes"),
    (lambda d: d["state_dict_unet"].pop("conv_in.weight"), "conv_in.weight is missing"),
    (lambda d: d["state_dict_vae"].pop(next(iter(d["state_dict_vae"]))), "no LoRA weights"),
    (lambda d: d.update(vae_lora_target_modules=r"^decoder\..*conv1$"), "VAE encoder only"),
    (lambda d: d.update(unet_lora_target_modules=["time_embedding"]), "is a TimestepEmbedding"),
    (lambda d: d["state_dict_unet_fuse_mlp"].update(weight=torch.zeros(3, 320)), "fuse_mlp"),
    (lambda d: d["state_embeddings"].pop("state_dict_vae_block"), "state_dict_vae_block"),
])
def test_bad_checkpoints_get_one_line_errors(s3diff_files, sd_turbo, tmp_path, change, message):
    path = _rewritten(s3diff_files, tmp_path, change)
    with pytest.raises(SRError, match=message) as err:
        _load(s3diff_files, sd_turbo, checkpoint=path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_a_de_net_with_other_weights_is_refused(s3diff_files, sd_turbo, tmp_path):
    state = torch.load(s3diff_files.de_net, weights_only=True)
    state["fc_degree.0.0.weight"] = torch.zeros(3, 3)
    path = tmp_path / "de_net.pth"
    torch.save(state, path)
    with pytest.raises(SRError, match="mis-shaped DEResNet weights"):
        _load(s3diff_files, sd_turbo, de_net=path)


def test_degradation_scores_are_per_image_and_in_range(s3diff_components):
    lr = torch.rand(2, 3, 24, 20)
    with torch.no_grad():
        scores = s3diff_components.de_net(lr)
    assert scores.shape == (2, 2) and bool(((scores > 0) & (scores < 1)).all())


def test_a_static_merge_equals_the_live_lora_at_its_own_degradation_only(s3diff_components):
    live = UNetStage.of(s3diff_components)
    at, other = torch.tensor([[0.5, 0.5]]), torch.tensor([[0.9, 0.1]])
    merged = MergedUNetStage(live, at)
    latent = torch.randn(1, 4, 8, 8)
    with torch.inference_mode():
        embeds = s3diff_components.prompt_embeds()
        got = merged(latent, embeds)
        assert (got - live(latent, at, embeds)).abs().max() <= 1e-4 * got.abs().max()
        assert (got - live(latent, other, embeds)).abs().max() > 1e-3 * got.abs().max()
    assert not any(isinstance(m, ModulatedLoRA) for m in merged.modules())
