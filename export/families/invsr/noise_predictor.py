"""InvSR's noise predictor (official ``NoisePredictor`` / ``TimeAwareEncoder``) rebuilt from upstream
diffusers blocks, with its config handling and an offline checkpoint loader.

The module tree and constructor arguments follow the official code, so the released checkpoint
(``noise_predictor_sd_turbo_v5.pth``) loads key for key (official InvSR: ``src/diffusers/models/autoencoders/
vae.py`` ``NoisePredictor``, ``configs/sample-sd-turbo.yaml`` ``model_start``, ``utils/util_net.py`` ``reload_model``).
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from diffusers.models.activations import ACT2CLS
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.unets.unet_2d_blocks import UNetMidBlock2D, get_down_block
from torch import nn

from sr_runtime.bounded_parse import read_yaml
from sr_runtime.checks import is_int
from sr_runtime.errors import SRError

from ...checkpoints import load_checkpoint_dict, strip_wrapper_prefixes

# ``model_start.params`` of the official configs/sample-sd-turbo.yaml.
OFFICIAL_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "down_block_types": ["AttnDownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D"],
    "block_out_channels": [256, 512],
    "layers_per_block": [3, 3],
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 128,
    "mid_block_add_attention": True,
    "resnet_time_scale_shift": "default",
    "temb_channels": 512,
    "attention_head_dim": 64,
    "freq_shift": 0,
    "flip_sin_to_cos": True,
    "double_z": True,
}

# The official structure at widths that run in milliseconds: for tests and the demo model.
TINY_CONFIG: dict[str, Any] = {
    **copy.deepcopy(OFFICIAL_CONFIG),
    "block_out_channels": [32, 64],
    "layers_per_block": [1, 1],
    "norm_num_groups": 8,
    "temb_channels": 32,
    "attention_head_dim": 16,
}

# Down blocks whose forward is (hidden, temb) -> (hidden, skips), the call TimeAwareEncoder makes.
SUPPORTED_DOWN_BLOCKS = ("AttnDownBlock2D", "DownBlock2D")
# Accepted because the official config has them; nothing reads them (there is no decoder, no tiling).
UNUSED_KEYS = frozenset({"up_block_types", "sample_size"})

# Applied as in the official TimeAwareEncoder, whatever the config says.
RESNET_EPS = 1e-6
DOWNSAMPLE_PADDING = 0
MIN_TIMESTEP_CHANNELS = 128
LOGVAR_RANGE = (-30.0, 20.0)


# Far above the official config (widths 512, 3 layers, 2 levels), low enough that a typo does not build millions
# of modules before the checkpoint is compared with them.
MAX_SIZE = 65_536
MAX_LAYERS = 64
MAX_LEVELS = 16


def _is_positive_int(value: Any, maximum: int = MAX_SIZE) -> bool:
    return is_int(value, 1, maximum)


def _is_layer_count(value: Any) -> bool:
    return _is_positive_int(value, MAX_LAYERS)


def _list_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, list) and 0 < len(value) <= MAX_LEVELS and all(check(v) for v in value)


def _one_of(*choices: str) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, str) and value in choices


_CONFIG_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "in_channels": (_is_positive_int, f"an integer from 1 to {MAX_SIZE:,}"),
    "down_block_types": (
        _list_of(_one_of(*SUPPORTED_DOWN_BLOCKS)),
        f"a list of {' / '.join(SUPPORTED_DOWN_BLOCKS)}",
    ),
    "up_block_types": (_list_of(lambda v: isinstance(v, str)), "a list of block type names"),
    "block_out_channels": (_list_of(_is_positive_int), f"a list of up to {MAX_LEVELS} integers from 1 to {MAX_SIZE:,}"),
    "layers_per_block": (
        lambda v: _is_layer_count(v) or _list_of(_is_layer_count)(v),
        f"an integer from 1 to {MAX_LAYERS} or a list of them",
    ),
    "act_fn": (_one_of(*ACT2CLS), f"one of {', '.join(ACT2CLS)}"),
    "latent_channels": (_is_positive_int, f"an integer from 1 to {MAX_SIZE:,}"),
    "norm_num_groups": (_is_positive_int, f"an integer from 1 to {MAX_SIZE:,}"),
    "sample_size": (
        lambda v: _is_positive_int(v) or _list_of(_is_positive_int)(v),
        "a positive integer or a list",
    ),
    "mid_block_add_attention": (lambda v: isinstance(v, bool), "true or false"),
    # "spatial" needs a different resnet type whose temb is a feature map: not this model.
    "resnet_time_scale_shift": (_one_of("default", "scale_shift"), "'default' or 'scale_shift'"),
    "temb_channels": (_is_positive_int, f"an integer from 1 to {MAX_SIZE:,}"),
    "attention_head_dim": (_is_positive_int, f"an integer from 1 to {MAX_SIZE:,}"),
    "freq_shift": (lambda v: is_int(v) or isinstance(v, float), "a number"),
    "flip_sin_to_cos": (lambda v: isinstance(v, bool), "true or false"),
    # Without double_z the official returns raw features, not a posterior; the exported graphs need the latter.
    "double_z": (lambda v: v is True, "true (the exported graphs sample the [mean, logvar] posterior)"),
}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validate_config(config: Any, source: str) -> dict[str, Any]:
    """A copy of ``config`` if it describes a buildable noise predictor, else an SRError naming ``source``."""
    if not isinstance(config, dict):
        raise SRError(
            f"{source}: expected a mapping of noise predictor settings, got {type(config).__name__}"
        )
    for key in config:
        if key not in _CONFIG_FIELDS:
            close = difflib.get_close_matches(str(key), list(_CONFIG_FIELDS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SRError(f"{source}: unknown key {key!r}{hint}")
    missing = [key for key in _CONFIG_FIELDS if key not in config and key not in UNUSED_KEYS]
    if missing:
        raise SRError(
            f"{source}: missing key{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}"
        )
    for key, value in config.items():
        check, expected = _CONFIG_FIELDS[key]
        if not check(value):
            raise SRError(f"{source}: {key} must be {expected}, got {_short(value)}")
    _check_consistency(config, source)
    return copy.deepcopy(config)


def _check_consistency(config: dict[str, Any], source: str) -> None:
    levels = len(config["down_block_types"])
    channels = config["block_out_channels"]
    if len(channels) != levels:
        raise SRError(
            f"{source}: block_out_channels has {len(channels)} entries but down_block_types has {levels}"
        )
    layers = config["layers_per_block"]
    if isinstance(layers, list) and len(layers) != levels:
        raise SRError(
            f"{source}: layers_per_block has {len(layers)} entries but down_block_types has {levels}"
        )
    for divisor in ("norm_num_groups", "attention_head_dim"):
        if any(c % config[divisor] for c in channels):
            raise SRError(
                f"{source}: every block_out_channels entry must be a multiple of {divisor}={config[divisor]}"
            )


def load_noise_predictor_config(path: str | Path | None = None) -> dict[str, Any]:
    """The official config for None; else a YAML/JSON file: the official sampler config (its
    ``model_start.params`` is used) or a flat mapping with the same keys."""
    if path is None:
        return copy.deepcopy(OFFICIAL_CONFIG)
    path = Path(path)
    source = f"noise predictor config {path}"
    data = read_yaml(path, "noise predictor config")
    if isinstance(data, dict) and "model_start" in data:
        model_start = data["model_start"]
        if not isinstance(model_start, dict) or "params" not in model_start:
            raise SRError(f"{source}: model_start has no params mapping")
        data = model_start["params"]
        source += " (model_start.params)"
    return validate_config(data, source)


def _layers_per_level(config: dict[str, Any]) -> list[int]:
    layers = config["layers_per_block"]
    return list(layers) if isinstance(layers, list) else [layers] * len(config["down_block_types"])


def _batched_timesteps(timestep: torch.Tensor | float, sample: torch.Tensor) -> torch.Tensor:
    # As the official: a Python number becomes a long tensor (199.7 -> 199), a 0-d tensor gets a batch
    # dimension, and multiplying by ones broadcasts (1,) to (B,) in a way that traces with a dynamic batch.
    if not torch.is_tensor(timestep):
        timestep = torch.tensor([timestep], dtype=torch.long)
    elif timestep.ndim == 0:
        timestep = timestep[None]
    timestep = timestep.to(sample.device)
    return timestep * torch.ones(sample.shape[0], dtype=timestep.dtype, device=sample.device)


class TimeAwareEncoder(nn.Module):
    """A VAE-style encoder whose every resnet receives a timestep embedding (the official TimeAwareEncoder)."""

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        channels = config["block_out_channels"]
        temb_channels = config["temb_channels"]
        shared = {
            "temb_channels": temb_channels,
            "resnet_eps": RESNET_EPS,
            "resnet_act_fn": config["act_fn"],
            "resnet_groups": config["norm_num_groups"],
            "attention_head_dim": config["attention_head_dim"],
            "resnet_time_scale_shift": config["resnet_time_scale_shift"],
        }
        timestep_channels = max(MIN_TIMESTEP_CHANNELS, channels[0])
        self.time_proj = Timesteps(timestep_channels, config["flip_sin_to_cos"], config["freq_shift"])
        self.time_embedding = TimestepEmbedding(timestep_channels, temb_channels)
        self.conv_in = nn.Conv2d(config["in_channels"], channels[0], kernel_size=3, stride=1, padding=1)
        self.down_blocks = nn.ModuleList(
            get_down_block(
                block_type,
                num_layers=layers,
                in_channels=channels[max(level - 1, 0)],
                out_channels=channels[level],
                add_downsample=level < len(channels) - 1,
                downsample_padding=DOWNSAMPLE_PADDING,
                **shared,
            )
            for level, (block_type, layers) in enumerate(
                zip(config["down_block_types"], _layers_per_level(config), strict=True)
            )
        )
        self.mid_block = UNetMidBlock2D(
            in_channels=channels[-1],
            output_scale_factor=1,
            add_attention=config["mid_block_add_attention"],
            **shared,
        )
        self.conv_norm_out = nn.GroupNorm(
            num_channels=channels[-1], num_groups=config["norm_num_groups"], eps=RESNET_EPS
        )
        self.conv_act = nn.SiLU()  # the official hard-codes SiLU here, whatever act_fn says
        self.conv_out = nn.Conv2d(channels[-1], 2 * config["latent_channels"], kernel_size=3, padding=1)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float) -> torch.Tensor:
        # The sinusoidal features are always fp32; the embedding MLP may hold another dtype.
        features = self.time_proj(_batched_timesteps(timestep, sample))
        temb = self.time_embedding(features.to(self.time_embedding.linear_1.weight.dtype))
        hidden = self.conv_in(sample)
        for block in self.down_blocks:
            hidden, _ = block(hidden, temb)
        hidden = self.mid_block(hidden, temb)
        return self.conv_out(self.conv_act(self.conv_norm_out(hidden)))


class NoisePredictor(nn.Module):
    """LR image in [0,1] and timestep -> InvSR's initial noise at half the LR size (latent size for x4)."""

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        self.config = copy.deepcopy(config)
        self.encoder = TimeAwareEncoder(config)

    def moments(self, lr: torch.Tensor, timestep: torch.Tensor | float) -> torch.Tensor:
        """The posterior's [mean, logvar] channels, (B, 2·latent_channels, h/2, w/2)."""
        return self.encoder(lr * 2 - 1.0, timestep)  # center_input_sample=True

    def forward(
        self, lr: torch.Tensor, timestep: torch.Tensor | float, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """mean + std·noise of the posterior (the official samples the noise itself); the mean when noise is None."""
        mean, logvar = torch.chunk(self.moments(lr, timestep), 2, dim=1)
        if noise is None:
            return mean
        std = torch.exp(0.5 * torch.clamp(logvar, *LOGVAR_RANGE))
        return mean + std * noise


def build_noise_predictor(config: dict[str, Any]) -> NoisePredictor:
    """A randomly initialised NoisePredictor; build it under ``torch.device('meta')`` to skip the allocation."""
    return NoisePredictor(validate_config(config, "noise predictor config"))


def load_noise_predictor(path: str | Path, config_path: str | Path | None = None) -> NoisePredictor:
    """The checkpoint at ``path`` in a model built from ``config_path`` (None: the official config),
    fp32, CPU, eval mode. Checkpoint entries outside ``encoder.`` (optimizer state, counters...) are ignored,
    as the official loader does; a missing, extra or mis-shaped ``encoder.`` weight is an SRError."""
    config = load_noise_predictor_config(config_path)
    with torch.device("meta"):
        model = build_noise_predictor(config)
    checkpoint = strip_wrapper_prefixes(load_checkpoint_dict(path), path)
    config_name = f"config {config_path}" if config_path is not None else "the official config"
    weights = _weights_for(model, checkpoint, f"checkpoint {path}", config_name)
    # assign=True takes the loaded tensors instead of copying into the meta placeholders.
    model.load_state_dict(weights, strict=True, assign=True)
    return model.float().eval()


def _weights_for(
    model: nn.Module, checkpoint: dict[str, Any], source: str, config_name: str
) -> dict[str, torch.Tensor]:
    expected = model.state_dict()
    weights = {key: value for key, value in checkpoint.items() if key.startswith("encoder.")}
    if not weights:
        raise SRError(f"{source} has no encoder.* weights: it is not an InvSR noise predictor checkpoint")
    missing = [key for key in expected if key not in weights]
    unexpected = [key for key in weights if key not in expected]
    if missing or unexpected:
        raise SRError(
            f"{source} does not fit {config_name}: {_key_mismatch(missing, unexpected, len(expected))}"
        )
    for key, target in expected.items():
        value = weights[key]
        if not isinstance(value, torch.Tensor):
            raise SRError(f"{source}: {key} is a {type(value).__name__}, not a tensor")
        if value.shape != target.shape:
            raise SRError(
                f"{source}: {key} has shape {tuple(value.shape)} but {config_name} needs {tuple(target.shape)}"
            )
    return weights


def _key_mismatch(missing: list[str], unexpected: list[str], total: int) -> str:
    parts = []
    if missing:
        parts.append(f"{len(missing)} of {total} weights missing ({_first_few(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({_first_few(unexpected)})")
    return "; ".join(parts)


def _first_few(keys: list[str], count: int = 3) -> str:
    return ", ".join(keys[:count]) + (", ..." if len(keys) > count else "")
