"""Random-weight InvSR checkpoints in the official file formats (SD-Turbo and the noise predictor): tiny ones for
the tests and the built-in demo model, full-width ones for benchmarks (latency does not depend on weight values).

They are read by the very loaders that read the real checkpoints, so the demo and the tests exercise
the real file formats. Everything is deterministic for a given seed.
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from ...sd.models import SD_TURBO
from ...sd.random_checkpoints import write_json, write_random_sd
from .locate import NOISE_PREDICTOR_FILE
from .noise_predictor import OFFICIAL_CONFIG, TINY_CONFIG, build_noise_predictor
from .prompt import POSITIVE_PROMPT

NOISE_PREDICTOR_CONFIGS = {"tiny": TINY_CONFIG, "full": OFFICIAL_CONFIG}

NOISE_PREDICTOR_TARGET = "diffusers.models.autoencoders.NoisePredictor"  # the official model_start.target
# How training may have saved the state dict: as is, in {'state_dict': ...} (the official trainer),
# under DDP's "module.", torch.compile's "_orig_mod." or both (util_net.reload_model accepts all).
NOISE_PREDICTOR_KEY_PREFIXES = {
    "none": "",
    "state_dict": "",
    "module": "module.",
    "orig_mod": "_orig_mod.",
    "module_orig_mod": "module._orig_mod.",
}
NOISE_PREDICTOR_WRAPPERS = tuple(NOISE_PREDICTOR_KEY_PREFIXES)
NOISE_PREDICTOR_CONFIG_FORMATS = {
    "official": "sample-sd-turbo.yaml",
    "flat_yaml": "noise_predictor.yaml",
    "flat_json": "noise_predictor.json",
}

def write_random_sd_turbo(folder: Path, seed: int = 0, hub_layout: bool = False, size: str = "tiny",
                          unet_levels: int | None = None) -> Path:
    """A random SD-Turbo whose tokenizer knows InvSR's prompt word by word (see ``write_random_sd``)."""
    return write_random_sd(folder, SD_TURBO, POSITIVE_PROMPT, seed, hub_layout, size, unet_levels)


def write_random_noise_predictor(
    folder: Path, seed: int = 0, wrapper: str = "state_dict", config_format: str = "official", size: str = "tiny"
) -> tuple[Path, Path]:
    """``noise_predictor_sd_turbo_v5.pth`` with random TINY_CONFIG (or, ``size="full"``, OFFICIAL_CONFIG)
    weights and its config file in ``folder``.

    ``wrapper``: one of NOISE_PREDICTOR_KEY_PREFIXES. ``config_format``: "official" (the sampler YAML,
    params under model_start), "flat_yaml" or "flat_json" (the params alone).
    """
    if wrapper not in NOISE_PREDICTOR_WRAPPERS:
        raise ValueError(f"wrapper must be one of {NOISE_PREDICTOR_WRAPPERS}, got {wrapper!r}")
    if config_format not in NOISE_PREDICTOR_CONFIG_FORMATS:
        raise ValueError(
            f"config_format must be one of {tuple(NOISE_PREDICTOR_CONFIG_FORMATS)}, got {config_format!r}"
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    prefix = NOISE_PREDICTOR_KEY_PREFIXES[wrapper]
    np_config = NOISE_PREDICTOR_CONFIGS[size]
    state = {prefix + key: value for key, value in build_noise_predictor(np_config).state_dict().items()}
    checkpoint = folder / NOISE_PREDICTOR_FILE
    torch.save({"state_dict": state} if wrapper == "state_dict" else state, checkpoint)
    config = folder / NOISE_PREDICTOR_CONFIG_FORMATS[config_format]
    _write_noise_predictor_config(config, config_format, np_config)
    return checkpoint, config


def _write_noise_predictor_config(path: Path, config_format: str, np_config: dict) -> None:
    params = dict(np_config)
    if config_format == "flat_json":
        write_json(path, params)
        return
    if config_format == "official":
        # ckpt_path stays null as in the official sample config (the command line supplies it), which
        # also keeps the file independent of where it is written.
        params = {"model_start": {"target": NOISE_PREDICTOR_TARGET, "ckpt_path": None, "params": params}}
    path.write_text(yaml.safe_dump(params, sort_keys=False))
