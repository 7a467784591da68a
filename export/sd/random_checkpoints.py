"""Random-weight SD releases in the files the hub ships (a diffusers folder or a hub cache): tiny ones for the tests
and the built-in demo models, full-width ones for benchmarks (latency does not depend on weight values).

They are read by the very loaders that read the real releases, so the demos and the tests exercise the real
file formats. Everything is deterministic for a given seed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel
from transformers.convert_slow_tokenizer import bytes_to_unicode

from .lora import Targets, weight_keys
from .models import SD21_BASE, SD_TURBO, SDModel

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
TEXT_PREFIX = "text_model."
MAX_TOKENS = 77
TEXT_HIDDEN = 32

# The files stabilityai's SD-2.x repos ship: model_index.json and scheduler_config.json are written by hand
# because save_pretrained would add keys of the installed diffusers version (final_sigmas_type,
# rescale_betas_zero_snr...) that the released files lack.
def _model_index(scheduler: str, diffusers_version: str) -> dict[str, Any]:
    return {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": diffusers_version,
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", scheduler],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }


_SCALED_LINEAR = {"beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False,
                  "num_train_timesteps": 1000, "prediction_type": "epsilon", "set_alpha_to_one": False,
                  "steps_offset": 1, "trained_betas": None}
_SCHEDULER_CONFIGS = {
    SD_TURBO: {  # stabilityai/sd-turbo's scheduler/scheduler_config.json
        "_class_name": "EulerDiscreteScheduler",
        "_diffusers_version": "0.24.0.dev0",
        **_SCALED_LINEAR,
        "interpolation_type": "linear",
        "sigma_max": None,
        "sigma_min": None,
        "timestep_spacing": "trailing",
        "timestep_type": "discrete",
        "use_karras_sigmas": False,
    },
    SD21_BASE: {  # stabilityai/stable-diffusion-2-1-base's scheduler/scheduler_config.json
        "_class_name": "PNDMScheduler",
        "_diffusers_version": "0.8.0",
        **_SCALED_LINEAR,
        "skip_prk_steps": True,
    },
}
# save_pretrained writes configs with sorted keys, as the released files are.
SCHEDULER_CONFIGS = {model: dict(sorted(config.items())) for model, config in _SCHEDULER_CONFIGS.items()}
MODEL_INDEXES = {SD_TURBO: _model_index("EulerDiscreteScheduler", "0.24.0.dev0"),
                 SD21_BASE: _model_index("PNDMScheduler", "0.8.0")}
# SD-2.x UNet layout (4 levels, cross-attention in the first three, linear projections) at tiny widths.
TINY_UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "block_out_channels": [32, 32, 64, 64],
    "layers_per_block": 1,
    "attention_head_dim": [2, 2, 4, 4],  # legacy name for the head count, as in sd-turbo's [5, 10, 20, 20]
    "cross_attention_dim": TEXT_HIDDEN,
    "use_linear_projection": True,
    "norm_num_groups": 8,
    "norm_eps": 1e-5,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "act_fn": "silu",
}
# Four levels keep the spatial factor at 8, like the SD VAE.
TINY_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [16, 16, 16, 16],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 8,
    "sample_size": 768,
    "scaling_factor": 0.18215,
    "force_upcast": True,
    "act_fn": "silu",
}
# The official tiled VAE (vaehook.py) hard-codes 32-group norms and two resnets per encoder level.
TINY_TILED_VAE = {**TINY_VAE, "block_out_channels": [32, 32, 32, 32], "layers_per_block": 2, "norm_num_groups": 32}
# sd-turbo's OpenCLIP-H tower in miniature; the token ids mirror its (legacy) config values.
TINY_TEXT_ENCODER = {
    "hidden_size": TEXT_HIDDEN,
    "intermediate_size": 4 * TEXT_HIDDEN,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": MAX_TOKENS,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
    "projection_dim": TEXT_HIDDEN,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}

# The released widths (stabilityai/sd-turbo's unet and vae configs) with random weights, for benchmarks: latency
# does not depend on weight values. The text encoder keeps OpenCLIP-H's width (what the UNet attends to)
# but one layer: it only makes the prompt embedding that bundles store, and is never timed.
FULL_UNET = {
    **TINY_UNET,
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "attention_head_dim": [5, 10, 20, 20],
    "cross_attention_dim": 1024,
    "norm_num_groups": 32,
}
FULL_VAE = {**TINY_VAE, "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "norm_num_groups": 32}
BENCH_TEXT_ENCODER = {
    **TINY_TEXT_ENCODER,
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 1,
    "num_attention_heads": 16,
    "projection_dim": 1024,
}
# SD-2.1's OpenCLIP-H text tower as released (23 layers): timed where a family encodes its prompt per image.
FULL_TEXT_ENCODER = {**BENCH_TEXT_ENCODER, "num_hidden_layers": 23, "projection_dim": 512}
# size -> (UNet, VAE, text encoder) configs
SIZES = {
    "tiny": (TINY_UNET, TINY_VAE, TINY_TEXT_ENCODER),
    "tiny-tiled-vae": (TINY_UNET, TINY_TILED_VAE, TINY_TEXT_ENCODER),
    "full": (FULL_UNET, FULL_VAE, BENCH_TEXT_ENCODER),
    "full-text-encoder": (FULL_UNET, FULL_VAE, FULL_TEXT_ENCODER),
}


def _added_token(content: str) -> dict[str, Any]:
    return {"content": content, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}


# SD-2.x tokenizer files: the legacy special_tokens_map.json pads with "!" (id 0), overriding the
# pad token of tokenizer_config.json; OpenCLIP was trained that way.
SPECIAL_TOKENS_MAP = {
    "bos_token": _added_token(BOS),
    "eos_token": _added_token(EOS),
    "pad_token": "!",
    "unk_token": _added_token(EOS),
}
TOKENIZER_CONFIG = {
    "add_prefix_space": False,
    "bos_token": {"__type": "AddedToken", **_added_token(BOS)},
    "do_lower_case": True,
    "eos_token": {"__type": "AddedToken", **_added_token(EOS)},
    "errors": "replace",
    "model_max_length": MAX_TOKENS,
    "pad_token": EOS,
    "special_tokens_map_file": "./special_tokens_map.json",
    "tokenizer_class": "CLIPTokenizer",
    "unk_token": {"__type": "AddedToken", **_added_token(EOS)},
}


def write_random_sd(folder: Path, model: SDModel, vocabulary_text: str, seed: int = 0, hub_layout: bool = False,
                    size: str = "tiny", unet_levels: int | None = None) -> Path:
    """A tiny (or, with ``size="full"``, full-width) random ``model`` as a diffusers folder at ``folder``, or with
    ``hub_layout`` as a Hugging Face cache ``folder/models--<org>--<name>/{blobs,refs,snapshots}``; returns
    ``folder``. The tokenizer's merges are learnt from ``vocabulary_text``, so that text tokenizes word by word as
    with the real vocabulary. ``unet_levels`` keeps only that many UNet levels (other UNet depths, for tests)."""
    folder = Path(folder)
    if not hub_layout:
        _write_diffusers_folder(folder, model, vocabulary_text, seed, size, unet_levels)
        return folder
    repo = folder / model.hub_folder
    revision = hashlib.sha1(f"tiny-{model.repo_id.split('/')[-1]}-seed{seed}".encode()).hexdigest()
    snapshot = repo / "snapshots" / revision
    _write_diffusers_folder(snapshot, model, vocabulary_text, seed, size, unet_levels)
    _move_into_blobs(snapshot, repo / "blobs")
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)  # the hub writes the bare hash, no newline
    return folder


def _unet_with_levels(config: dict, levels: int) -> dict:
    """The UNet config cut to ``levels`` levels: cross-attention in all but the innermost, as SD's."""
    per_level = ("block_out_channels", "attention_head_dim")
    cut = {**config, **{key: config[key][:levels] for key in per_level}}
    cut["down_block_types"] = ["CrossAttnDownBlock2D"] * (levels - 1) + ["DownBlock2D"]
    cut["up_block_types"] = ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * (levels - 1)
    return cut


def _write_diffusers_folder(folder: Path, model: SDModel, vocabulary_text: str, seed: int, size: str,
                            unet_levels: int | None) -> None:
    unet_config, vae_config, text_config = SIZES[size]
    if unet_levels is not None:
        unet_config = _unet_with_levels(unet_config, unet_levels)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "model_index.json", MODEL_INDEXES[model])
    write_json(folder / "scheduler" / "scheduler_config.json", SCHEDULER_CONFIGS[model])
    vocab_size = _write_tokenizer(folder / "tokenizer", vocabulary_text)
    torch.manual_seed(seed)
    UNet2DConditionModel(**unet_config).save_pretrained(folder / "unet")
    torch.manual_seed(seed)
    AutoencoderKL(**vae_config).save_pretrained(folder / "vae")
    torch.manual_seed(seed)
    _save_text_encoder(CLIPTextModel(CLIPTextConfig(vocab_size=vocab_size, **text_config)), folder / "text_encoder")


def _save_text_encoder(model: CLIPTextModel, folder: Path) -> None:
    """Saved with the released key names (``text_model.*``): transformers 5 drops that prefix when saving,
    and the transformers the official sampler pins (4.46) then silently ignores every tensor."""
    model.save_pretrained(folder)
    weights = folder / "model.safetensors"
    state = load_file(weights)
    save_file({k if k.startswith(TEXT_PREFIX) else TEXT_PREFIX + k: v for k, v in state.items()}, weights,
              metadata={"format": "pt"})


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _write_tokenizer(folder: Path, vocabulary_text: str) -> int:
    """CLIP's byte-level BPE files, merges learnt from ``vocabulary_text``; returns the vocabulary size."""
    alphabet = list(bytes_to_unicode().values())  # CLIP's order: "!" is id 0
    merges = _learn_merges(vocabulary_text)
    # CLIP's vocabulary order: the bytes, the bytes ending a word, one token per merge, the specials.
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["".join(pair) for pair in merges] + [BOS, EOS]
    write_json(folder / "vocab.json", {token: index for index, token in enumerate(tokens)})
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    write_json(folder / "special_tokens_map.json", SPECIAL_TOKENS_MAP)
    write_json(folder / "tokenizer_config.json", TOKENIZER_CONFIG)
    return len(tokens)


def _learn_merges(text: str) -> list[tuple[str, str]]:
    """Greedy BPE over the words of ``text`` until every word is a single token, so the text
    tokenizes word by word as with the real 49408-token vocabulary."""
    # CLIP's pre-tokenizer pattern, restricted to ASCII (the prompts' alphabet).
    pieces = re.findall(r"[a-z]+|[0-9]|[^\sa-z0-9]+", text.lower())
    words = [tuple(piece[:-1]) + (piece[-1] + "</w>",) for piece in pieces]
    merges: list[tuple[str, str]] = []
    while pairs := Counter(pair for word in words for pair in zip(word[:-1], word[1:], strict=True)):
        best = max(pairs, key=lambda pair: (pairs[pair], pair))  # ties go by the pair itself: deterministic
        merges.append(best)
        words = [_apply_merge(word, best) for word in words]
    return merges


def _apply_merge(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    merged: list[str] = []
    i = 0
    while i < len(word):
        if word[i : i + 2] == pair:
            merged.append(pair[0] + pair[1])
            i += 2
        else:
            merged.append(word[i])
            i += 1
    return tuple(merged)


def _move_into_blobs(snapshot: Path, blobs: Path) -> None:
    """The hub cache layout: content-addressed files in blobs/, relative symlinks in the snapshot."""
    blobs.mkdir(parents=True, exist_ok=True)
    for path in sorted(p for p in snapshot.rglob("*") if p.is_file() and not p.is_symlink()):
        blob = blobs / hashlib.sha256(path.read_bytes()).hexdigest()
        if blob.exists():
            path.unlink()
        else:
            path.rename(blob)
        path.symlink_to(os.path.relpath(blob, path.parent))




def random_lora_state(network: nn.Module, prefix: str, targets: Targets, adapter: str, rank: int) -> dict:
    """PEFT's weights (``<prefix><layer>.lora_A.<adapter>.weight``, lora_B) for every layer of ``network`` the
    targets match, random (lora_B too: a fresh adapter's zero B would hide the LoRA)."""
    state = {}
    for name, module in network.named_modules():
        if not targets.match(prefix + name):
            continue
        if isinstance(module, nn.Conv2d):
            down = nn.Conv2d(module.in_channels, rank, module.kernel_size, module.stride, module.padding, bias=False)
            up = nn.Conv2d(rank, module.out_channels, 1, bias=False)
        else:
            down, up = nn.Linear(module.in_features, rank, bias=False), nn.Linear(rank, module.out_features, bias=False)
        for key, layer in zip(weight_keys(prefix + name, adapter), (down, up), strict=True):
            state[key] = layer.weight.detach().clone()
    return state
