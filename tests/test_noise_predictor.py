"""The noise predictor against the official NoisePredictor (InvSR's vae.py and sample-sd-turbo.yaml) and its loaders."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from sr_export.families.invsr.noise_predictor import (
    OFFICIAL_CONFIG,
    TINY_CONFIG,
    NoisePredictor,
    build_noise_predictor,
    load_noise_predictor,
    load_noise_predictor_config,
)
from sr_runtime.errors import SRError


def spec_checkpoint_keys() -> set[str]:
    """Spec 5.1's key pattern, written out for the official config (3 layers per block, 2 levels)."""
    resnet = ["norm1", "conv1", "time_emb_proj", "norm2", "conv2"]
    attention = ["group_norm", "to_q", "to_k", "to_v", "to_out.0"]
    modules = ["time_embedding.linear_1", "time_embedding.linear_2", "conv_in", "conv_norm_out", "conv_out"]
    for block in (0, 1):
        for layer in (0, 1, 2):
            modules += [f"down_blocks.{block}.resnets.{layer}.{m}" for m in resnet]
            modules += [f"down_blocks.{block}.attentions.{layer}.{m}" for m in attention]
    modules.append("down_blocks.1.resnets.0.conv_shortcut")  # 256 -> 512
    modules.append("down_blocks.0.downsamplers.0.conv")
    for layer in (0, 1):
        modules += [f"mid_block.resnets.{layer}.{m}" for m in resnet]
    modules += [f"mid_block.attentions.0.{m}" for m in attention]
    return {f"encoder.{m}.{p}" for m in modules for p in ("weight", "bias")}


def spec_param_count() -> int:
    """Spec 1.5's formulas."""

    def resnet(ci: int, co: int) -> int:
        return (
            2 * ci
            + (9 * ci * co + co)
            + (512 * co + co)
            + 2 * co
            + (9 * co * co + co)
            + (ci * co + co if ci != co else 0)
        )

    def attention(c: int) -> int:
        return 2 * c + 4 * (c * c + c)

    time_embedding = 256 * 512 + 512 + 512 * 512 + 512
    conv_in = 3 * 256 * 9 + 256
    block0 = 3 * (resnet(256, 256) + attention(256)) + 256 * 256 * 9 + 256
    block1 = resnet(256, 512) + 2 * resnet(512, 512) + 3 * attention(512)
    mid = 2 * resnet(512, 512) + attention(512)
    return time_embedding + conv_in + block0 + block1 + mid + 2 * 512 + 512 * 8 * 9 + 8


def spec_timestep_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Spec 1.3: [cos, sin] of t·exp(-ln(10000)·k/(dim/2)), k = 0..dim/2-1, in float64."""
    freqs = torch.exp(-math.log(10000) * torch.arange(dim // 2, dtype=torch.float64) / (dim // 2))
    angles = t.double()[:, None] * freqs[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


def spec_forward(model: NoisePredictor, lr: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The moments written out from spec 1.2/1.3 with plain torch ops on the model's weights."""
    w = {k.removeprefix("encoder."): v for k, v in model.state_dict().items()}
    config = model.config
    groups, head_dim = config["norm_num_groups"], config["attention_head_dim"]

    def linear(name: str, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, w[f"{name}.weight"], w[f"{name}.bias"])

    def conv(name: str, x: torch.Tensor, **kwargs) -> torch.Tensor:
        return F.conv2d(x, w[f"{name}.weight"], w[f"{name}.bias"], **kwargs)

    def norm(name: str, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x, groups, w[f"{name}.weight"], w[f"{name}.bias"], eps=1e-6)

    def resnet(name: str, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = conv(f"{name}.conv1", F.silu(norm(f"{name}.norm1", x)), padding=1)
        h = h + linear(f"{name}.time_emb_proj", F.silu(temb))[:, :, None, None]
        h = conv(f"{name}.conv2", F.silu(norm(f"{name}.norm2", h)), padding=1)
        shortcut = conv(f"{name}.conv_shortcut", x) if f"{name}.conv_shortcut.weight" in w else x
        return shortcut + h

    def attention(name: str, x: torch.Tensor) -> torch.Tensor:
        b, c, height, width = x.shape
        tokens = norm(f"{name}.group_norm", x.reshape(b, c, height * width)).transpose(1, 2)
        q, k, v = (
            linear(f"{name}.{p}", tokens).reshape(b, -1, c // head_dim, head_dim).transpose(1, 2)
            for p in ("to_q", "to_k", "to_v")
        )
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(head_dim), dim=-1)
        merged = (weights @ v).transpose(1, 2).reshape(b, height * width, c)
        return linear(f"{name}.to_out.0", merged).transpose(1, 2).reshape(b, c, height, width) + x

    dim = max(128, config["block_out_channels"][0])
    features = spec_timestep_features(t * torch.ones(lr.shape[0]), dim).float()
    temb = linear("time_embedding.linear_2", F.silu(linear("time_embedding.linear_1", features)))
    h = conv("conv_in", lr * 2 - 1, padding=1)
    for block, layers in enumerate(config["layers_per_block"]):
        for layer in range(layers):
            h = resnet(f"down_blocks.{block}.resnets.{layer}", h, temb)
            h = attention(f"down_blocks.{block}.attentions.{layer}", h)
        if f"down_blocks.{block}.downsamplers.0.conv.weight" in w:
            h = conv(f"down_blocks.{block}.downsamplers.0.conv", F.pad(h, (0, 1, 0, 1)), stride=2)
    h = resnet("mid_block.resnets.0", h, temb)
    h = attention("mid_block.attentions.0", h)
    h = resnet("mid_block.resnets.1", h, temb)
    return conv("conv_out", F.silu(norm("conv_norm_out", h)), padding=1)


def official_on_meta() -> NoisePredictor:
    with torch.device("meta"):
        return build_noise_predictor(OFFICIAL_CONFIG)


def tiny_model(seed: int = 0) -> NoisePredictor:
    torch.manual_seed(seed)
    return build_noise_predictor(TINY_CONFIG).eval()


def assert_one_line_error(excinfo: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(excinfo.value)
    assert "\n" not in message and message.strip() == message
    for fragment in fragments:
        assert fragment in message, message


# --- architecture -----------------------------------------------------------------------------


def test_official_parameter_count() -> None:
    count = sum(p.numel() for p in official_on_meta().parameters())
    assert count == 33_837_576 == spec_param_count()


def test_official_state_dict_keys_are_the_released_checkpoints() -> None:
    assert set(official_on_meta().state_dict()) == spec_checkpoint_keys()


def test_official_layer_shapes() -> None:
    state = official_on_meta().state_dict()
    assert state["encoder.time_embedding.linear_1.weight"].shape == (512, 256)
    assert state["encoder.down_blocks.0.downsamplers.0.conv.weight"].shape == (256, 256, 3, 3)
    assert state["encoder.down_blocks.1.resnets.0.conv_shortcut.weight"].shape == (512, 256, 1, 1)
    assert state["encoder.mid_block.resnets.1.time_emb_proj.weight"].shape == (512, 512)
    assert state["encoder.conv_out.weight"].shape == (8, 512, 3, 3)


@pytest.mark.parametrize("config", [OFFICIAL_CONFIG, TINY_CONFIG], ids=["official", "tiny"])
def test_timestep_features_match_the_closed_form(config: dict) -> None:
    with torch.device("meta"):
        model = build_noise_predictor(config)
    dim = max(128, config["block_out_channels"][0])
    t = torch.tensor([0.0, 49.0, 199.0, 999.0])
    expected = spec_timestep_features(t, dim)
    # time_proj holds no weights, so the meta-built model computes on the CPU timesteps.
    features = model.encoder.time_proj(t)
    assert features.dtype == torch.float32
    torch.testing.assert_close(features.double(), expected, atol=2e-4, rtol=0)


def test_timestep_reaches_the_embedding_broadcast_over_the_batch() -> None:
    model = tiny_model()
    seen = []
    model.encoder.time_embedding.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    with torch.no_grad():
        model.moments(torch.rand(3, 3, 32, 32), torch.tensor([199.0]))
    expected = model.encoder.time_proj(torch.full((3,), 199.0))
    torch.testing.assert_close(seen[0], expected, rtol=0, atol=0)


def test_timestep_forms_agree() -> None:
    model = tiny_model()
    lr = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        reference = model.moments(lr, torch.tensor([199.0]))
        for timestep in (torch.tensor(199.0), torch.tensor([199.0, 199.0]), 199, 199.0):
            torch.testing.assert_close(model.moments(lr, timestep), reference, rtol=0, atol=0)
        per_sample = model.moments(lr, torch.tensor([199.0, 49.0]))
        at_49 = model.moments(lr[1:], torch.tensor([49.0]))
    torch.testing.assert_close(per_sample[:1], reference[:1])
    torch.testing.assert_close(per_sample[1:], at_49)
    assert not torch.allclose(at_49, reference[1:])


def test_moments_match_the_spec_written_out() -> None:
    model = tiny_model()
    lr = torch.rand(2, 3, 32, 24)
    t = torch.tensor([199.0])
    with torch.no_grad():
        torch.testing.assert_close(model.moments(lr, t), spec_forward(model, lr, t), rtol=1e-4, atol=1e-5)


def test_output_shapes() -> None:
    model = tiny_model()
    with torch.no_grad():
        assert model.moments(torch.rand(2, 3, 64, 48), 199.0).shape == (2, 8, 32, 24)
        assert model(torch.rand(2, 3, 64, 48), torch.tensor([199.0])).shape == (2, 4, 32, 24)


def test_posterior_mean_noise_and_logvar_clamp() -> None:
    model = tiny_model()
    # With conv_out reduced to its bias, the moments are known constants.
    mean = torch.tensor([0.5, -1.0, 2.0, 0.0])
    logvar = torch.tensor([100.0, -100.0, 0.0, 2.0])  # clamped to 20 and -30
    with torch.no_grad():
        model.encoder.conv_out.weight.zero_()
        model.encoder.conv_out.bias.copy_(torch.cat([mean, logvar]))
        lr = torch.rand(2, 3, 16, 16)
        noise = torch.randn(2, 4, 8, 8)
        posterior_mean = model(lr, 199.0)
        sampled = model(lr, 199.0, noise)
    std = torch.exp(0.5 * torch.tensor([20.0, -30.0, 0.0, 2.0]))
    torch.testing.assert_close(posterior_mean, mean[None, :, None, None].expand(2, 4, 8, 8), rtol=0, atol=0)
    torch.testing.assert_close(sampled, mean[None, :, None, None] + std[None, :, None, None] * noise)


def test_onnx_export_with_dynamic_batch_and_size(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    model = tiny_model()
    path = tmp_path / "np.onnx"
    with torch.no_grad():
        torch.onnx.export(
            model,
            (torch.rand(1, 3, 32, 32), torch.tensor([199.0]), torch.randn(1, 4, 16, 16)),
            str(path),
            input_names=["lr", "timestep", "noise"],
            output_names=["noise_out"],
            dynamic_axes={"lr": {0: "b", 2: "h", 3: "w"}, "noise": {0: "b", 2: "h2", 3: "w2"}},
            opset_version=17,
            dynamo=False,
        )
    lr, timestep, noise = torch.rand(3, 3, 48, 64), torch.tensor([149.0]), torch.randn(3, 4, 24, 32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"lr": lr.numpy(), "timestep": timestep.numpy(), "noise": noise.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(out, model(lr, timestep, noise).numpy(), atol=1e-4)


# --- checkpoint loader -------------------------------------------------------------------------


@pytest.fixture
def tiny_config_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY_CONFIG))
    return path


@pytest.fixture
def tiny_weights() -> dict[str, torch.Tensor]:
    return tiny_model(seed=1).state_dict()


def save(tmp_path: Path, obj: object, name: str = "np.pth") -> Path:
    path = tmp_path / name
    torch.save(obj, path)
    return path


def prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in state.items()}


@pytest.mark.parametrize(
    "wrap",
    [
        lambda s: s,
        lambda s: {"state_dict": s},
        lambda s: prefixed(s, "module."),
        lambda s: prefixed(s, "_orig_mod."),
        lambda s: {"state_dict": prefixed(s, "module._orig_mod.")},
        # What the trainer saves next to the weights is ignored, as by the official loader.
        lambda s: {"state_dict": prefixed(s, "module."), "optimizer": {"lr": 1e-4}, "iters_start": 5},
        lambda s: {**s, "ema_decay": torch.tensor(0.999), 7: torch.zeros(1)},
    ],
    ids=[
        "plain",
        "state_dict",
        "module",
        "orig_mod",
        "module_orig_mod",
        "trainer_extras",
        "non_encoder_extras",
    ],
)
def test_loader_accepts_official_layouts(tmp_path, tiny_config_file, tiny_weights, wrap) -> None:
    model = load_noise_predictor(save(tmp_path, wrap(tiny_weights)), tiny_config_file)
    assert_loaded(model, tiny_weights)


def test_loader_casts_fp16_weights_to_fp32(tmp_path, tiny_config_file, tiny_weights) -> None:
    half = {k: v.half() for k, v in tiny_weights.items()}
    model = load_noise_predictor(save(tmp_path, half), tiny_config_file)
    assert_loaded(model, {k: v.float() for k, v in half.items()})


def assert_loaded(model: NoisePredictor, expected: dict[str, torch.Tensor]) -> None:
    assert not model.training
    loaded = model.state_dict()
    assert loaded.keys() == expected.keys()
    for key, value in loaded.items():
        assert value.dtype == torch.float32 and value.device.type == "cpu"
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0)
    with torch.no_grad():
        assert model(torch.rand(1, 3, 16, 16), 199.0).isfinite().all()


def test_loader_missing_key(tmp_path, tiny_config_file, tiny_weights) -> None:
    del tiny_weights["encoder.conv_out.bias"]
    with pytest.raises(SRError) as excinfo:
        load_noise_predictor(save(tmp_path, tiny_weights), tiny_config_file)
    assert_one_line_error(excinfo, "1 of", "missing", "encoder.conv_out.bias", str(tiny_config_file))


def test_loader_unexpected_encoder_key(tmp_path, tiny_config_file, tiny_weights) -> None:
    tiny_weights["encoder.foo.weight"] = torch.zeros(3)
    with pytest.raises(SRError) as excinfo:
        load_noise_predictor(save(tmp_path, tiny_weights), tiny_config_file)
    assert_one_line_error(excinfo, "1 unexpected", "encoder.foo.weight")


def test_loader_tiny_checkpoint_with_official_config(tmp_path, tiny_weights) -> None:
    with pytest.raises(SRError) as excinfo:
        load_noise_predictor(save(tmp_path, tiny_weights))
    assert_one_line_error(excinfo, "official config", "missing", "...")


def test_loader_shape_mismatch(tmp_path, tiny_config_file, tiny_weights) -> None:
    tiny_weights["encoder.conv_in.weight"] = torch.zeros(32, 3, 1, 1)
    with pytest.raises(SRError) as excinfo:
        load_noise_predictor(save(tmp_path, tiny_weights), tiny_config_file)
    assert_one_line_error(excinfo, "encoder.conv_in.weight", "(32, 3, 1, 1)", "(32, 3, 3, 3)")


def test_loader_non_tensor_value(tmp_path, tiny_config_file, tiny_weights) -> None:
    tiny_weights["encoder.conv_in.bias"] = [0.0] * 32
    with pytest.raises(SRError) as excinfo:
        load_noise_predictor(save(tmp_path, tiny_weights), tiny_config_file)
    assert_one_line_error(excinfo, "encoder.conv_in.bias", "list")


def test_loader_ambiguous_prefixes(tmp_path, tiny_config_file, tiny_weights) -> None:
    state = {**tiny_weights, "module.encoder.conv_in.bias": tiny_weights["encoder.conv_in.bias"]}
    with pytest.raises(SRError) as excinfo:
        load_noise_predictor(save(tmp_path, state), tiny_config_file)
    assert_one_line_error(excinfo, "module.encoder.conv_in.bias", "both")


class NotAllowed:
    pass


@pytest.mark.parametrize(
    ("write", "fragment"),
    [
        (lambda p: p.write_bytes(np.random.default_rng(0).bytes(256)), "not a PyTorch checkpoint"),
        (lambda p: p.write_text("hello world\n"), "not a PyTorch checkpoint"),
        (lambda p: p.write_bytes(b""), "not a PyTorch checkpoint"),
        (lambda p: torch.save([1, 2, 3], p), "holds a list"),
        (lambda p: torch.save(torch.zeros(3), p), "holds a Tensor"),
        (lambda p: torch.save({"state_dict": [1]}, p), "holds a list"),
        (
            lambda p: torch.save({"net": NotAllowed()}, p),
            "NotAllowed) that torch.load(weights_only=True) refuses",
        ),
        (lambda p: p.write_bytes(pickle.dumps({"a": 1}, protocol=4)), "not a PyTorch checkpoint"),
        (lambda p: torch.save({"weights": torch.zeros(1)}, p), "no encoder.* weights"),
    ],
    ids=[
        "random_bytes",
        "text",
        "empty",
        "list",
        "tensor",
        "wrapped_list",
        "pickled_object",
        "raw_pickle",
        "other_model",
    ],
)
def test_loader_rejects_non_checkpoints(tmp_path, tiny_config_file, write, fragment) -> None:
    path = tmp_path / "bad.pth"
    write(path)
    with pytest.raises(SRError) as excinfo:
        load_noise_predictor(path, tiny_config_file)
    assert_one_line_error(excinfo, fragment, str(path))


def test_loader_missing_file(tmp_path) -> None:
    with pytest.raises(SRError) as excinfo:
        load_noise_predictor(tmp_path / "absent.pth")
    assert_one_line_error(excinfo, "not found")


# --- config ------------------------------------------------------------------------------------


OFFICIAL_SAMPLER_YAML = """\
seed: 12345
basesr:
  sf: 4
  chopping:
    pch_size: 128
    weight_type: Gaussian
tiled_vae: True
cfg_scale: 1.0
start_timesteps: 200
color_fix: ~
base_model: sd-turbo
sd_pipe:
  target: diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion.StableDiffusionPipeline
  params:
    pretrained_model_name_or_path: stabilityai/sd-turbo
    use_safetensors: True
    torch_dtype: torch.float16
model_start:
  target: diffusers.models.autoencoders.NoisePredictor
  ckpt_path: ~
  params:
    in_channels: 3
    down_block_types:
      - AttnDownBlock2D
      - AttnDownBlock2D
    up_block_types:
      - AttnUpBlock2D
      - AttnUpBlock2D
    block_out_channels:
      - 256
      - 512
    layers_per_block:
      - 3
      - 3
    act_fn: silu
    latent_channels: 4
    norm_num_groups: 32
    sample_size: 128
    mid_block_add_attention: True
    resnet_time_scale_shift: default
    temb_channels: 512
    attention_head_dim: 64
    freq_shift: 0
    flip_sin_to_cos: True
    double_z: True
model_middle:
  target: diffusers.models.autoencoders.NoisePredictor
  params:
    in_channels: 3
"""


def test_config_default_is_official_copy() -> None:
    config = load_noise_predictor_config(None)
    assert config == OFFICIAL_CONFIG
    config["block_out_channels"].append(1)
    assert OFFICIAL_CONFIG["block_out_channels"] == [256, 512]


def test_config_official_sampler_yaml(tmp_path) -> None:
    path = tmp_path / "sample-sd-turbo.yaml"
    path.write_text(OFFICIAL_SAMPLER_YAML)
    assert load_noise_predictor_config(path) == OFFICIAL_CONFIG


def test_config_flat_yaml_and_json(tmp_path) -> None:
    (tmp_path / "np.yaml").write_text(yaml.safe_dump(TINY_CONFIG))
    (tmp_path / "np.json").write_text(json.dumps(TINY_CONFIG))
    assert load_noise_predictor_config(tmp_path / "np.yaml") == TINY_CONFIG
    assert load_noise_predictor_config(str(tmp_path / "np.json")) == TINY_CONFIG


def test_config_unused_keys_are_optional(tmp_path) -> None:
    config = {k: v for k, v in TINY_CONFIG.items() if k not in ("up_block_types", "sample_size")}
    (tmp_path / "np.json").write_text(json.dumps(config))
    assert load_noise_predictor_config(tmp_path / "np.json") == config


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        (
            {"block_out_chanels": [32, 64]},
            ("unknown key 'block_out_chanels'", "did you mean 'block_out_channels'"),
        ),
        ({"temb_channels": None}, ("temb_channels must be an integer from 1", "None")),
        ({"layers_per_block": [3, 100_000]}, ("layers_per_block must be an integer from 1 to 64", "100000")),
        ({"temb_channels": True}, ("temb_channels must be",)),
        ({"block_out_channels": "32,64"}, ("block_out_channels must be",)),
        ({"down_block_types": ["DownEncoderBlock2D", "AttnDownBlock2D"]}, ("down_block_types must be",)),
        ({"double_z": False}, ("double_z must be true",)),
        ({"block_out_channels": [32, 64, 128]}, ("block_out_channels has 3 entries",)),
        ({"layers_per_block": [1]}, ("layers_per_block has 1 entries",)),
        ({"norm_num_groups": 7}, ("multiple of norm_num_groups=7",)),
    ],
    ids=[
        "unknown",
        "null",
        "absurd_layers",
        "bool_for_int",
        "string_for_list",
        "block_type",
        "double_z",
        "levels",
        "layers",
        "groups",
    ],
)
def test_config_errors_name_key_and_file(tmp_path, change, fragments) -> None:
    path = tmp_path / "np.yaml"
    path.write_text(yaml.safe_dump({**TINY_CONFIG, **change}))
    with pytest.raises(SRError) as excinfo:
        load_noise_predictor_config(path)
    assert_one_line_error(excinfo, str(path), *fragments)


def test_config_missing_key(tmp_path) -> None:
    path = tmp_path / "sample.yaml"
    params = {k: v for k, v in TINY_CONFIG.items() if k != "attention_head_dim"}
    path.write_text(yaml.safe_dump({"model_start": {"params": params}}))
    with pytest.raises(SRError) as excinfo:
        load_noise_predictor_config(path)
    assert_one_line_error(excinfo, str(path), "model_start.params", "missing key 'attention_head_dim'")


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("np.yaml", "a: [1, 2\n", "not valid YAML"),
        ("np.json", "{'a': 1}", "not valid JSON"),
        ("np.yaml", "- 1\n- 2\n", "expected a mapping"),
        ("np.yaml", "model_start:\n  target: x\n", "model_start has no params"),
    ],
)
def test_config_unreadable(tmp_path, name, text, fragment) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SRError) as excinfo:
        load_noise_predictor_config(path)
    assert_one_line_error(excinfo, str(path), fragment)


def test_config_missing_file(tmp_path) -> None:
    with pytest.raises(SRError) as excinfo:
        load_noise_predictor_config(tmp_path / "absent.yaml")
    assert_one_line_error(excinfo, "absent.yaml", "not found")
