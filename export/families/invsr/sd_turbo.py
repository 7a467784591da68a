"""SD-Turbo (UNet, VAE, CLIP text encoder, tokenizer, Euler scheduler config) read offline from the
folders the official code and the Hugging Face hub leave on disk, and the fixed prompt embedding.

The official sampler calls ``StableDiffusionPipeline.from_pretrained("stabilityai/sd-turbo",
cache_dir=..., use_safetensors=True)``, so a real install is a hub cache; a plain diffusers folder
(``save_pretrained`` output) is accepted too (official InvSR: ``sampler_invsr.py`` ``build_model``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer
from transformers.utils import logging as transformers_logging

from sr_runtime.bounded_parse import read_json
from sr_runtime.errors import SRError

# sampler_invsr.py: _positive, the only prompt InvSR ever uses (cfg_scale 1.0, no negative prompt).
POSITIVE_PROMPT = (
    "Cinematic, high-contrast, photo-realistic, 8k, ultra HD, "
    "meticulous detailing, hyper sharpness, perfect without deformations"
)
SD_TURBO_REPO_ID = "stabilityai/sd-turbo"
HUB_REPO_FOLDER = "models--" + SD_TURBO_REPO_ID.replace("/", "--")
SD_TURBO_ENV = "SR_EXPORT_SD_TURBO"
# The official --sd_path default: a hub cache_dir, relative to the working directory.
OFFICIAL_CACHE_DIR = Path("weights")

MODEL_INDEX_FILE = "model_index.json"
SCHEDULER_CONFIG_FILE = "scheduler/scheduler_config.json"
SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
EXPECTED_LAYOUT = (
    f"a diffusers folder ({MODEL_INDEX_FILE}, {'/, '.join(SUBFOLDERS)}/) "
    f"or a Hugging Face cache holding {HUB_REPO_FOLDER}"
)
# The classes the official pipeline instantiates from model_index.json; the exported graphs and the
# σ schedule reproduce exactly these (InvSR indexes the Euler σ table directly).
EXPECTED_CLASSES = {
    "unet": ("UNet2DConditionModel",),
    "vae": ("AutoencoderKL",),
    "text_encoder": ("CLIPTextModel",),
    "tokenizer": ("CLIPTokenizer", "CLIPTokenizerFast"),
    "scheduler": ("EulerDiscreteScheduler",),
}
# Either one describes a complete CLIP tokenizer; transformers 5 silently builds a 3-token
# vocabulary when both are missing, so their presence is checked before loading.
TOKENIZER_FILE_SETS = (("vocab.json", "merges.txt"), ("tokenizer.json",))


@dataclass(frozen=True)
class _Weights:
    subfolder: str
    label: str
    model_class: type
    file_names: tuple[str, ...]  # in the order from_pretrained prefers them

    @property
    def from_transformers(self) -> bool:
        return self.model_class is CLIPTextModel


_DIFFUSERS_WEIGHTS = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.fp16.safetensors",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.fp16.bin",
)
# The default (fp32) file first, as the official loads it; an fp16-variant-only download holds the same
# values rounded to fp16, which is what the official runs in anyway; .bin when there are no safetensors.
_WEIGHTS = (
    _Weights("unet", "UNet", UNet2DConditionModel, _DIFFUSERS_WEIGHTS),
    _Weights("vae", "VAE", AutoencoderKL, _DIFFUSERS_WEIGHTS),
    _Weights(
        "text_encoder",
        "text encoder",
        CLIPTextModel,
        ("model.safetensors", "model.fp16.safetensors", "pytorch_model.bin", "pytorch_model.fp16.bin"),
    ),
)


@dataclass
class SDTurbo:
    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    scheduler_config: dict
    folder: Path


def resolve_sd_turbo_folder(path: str | Path) -> Path:
    """The diffusers folder at ``path``: the folder itself, or the snapshot of a hub cache
    (``<cache>/models--stabilityai--sd-turbo`` or that folder itself) named by refs/main, else the newest."""
    path = Path(path).expanduser()
    if not path.exists():
        raise SRError(f"SD-Turbo path {path} does not exist; expected {EXPECTED_LAYOUT}")
    if not path.is_dir():
        raise SRError(f"SD-Turbo path {path} is a file; expected {EXPECTED_LAYOUT}")
    folder = _diffusers_folder_in(path)
    required = (MODEL_INDEX_FILE, *(f"{subfolder}/" for subfolder in SUBFOLDERS))
    missing = [name for name in required if not (folder / name).exists()]
    if missing:
        raise SRError(
            f"{folder} is not an SD-Turbo folder: {', '.join(missing)} missing; expected {EXPECTED_LAYOUT}"
        )
    return folder


def _diffusers_folder_in(path: Path) -> Path:
    if (path / MODEL_INDEX_FILE).is_file():
        return path
    if (path / HUB_REPO_FOLDER).is_dir():
        return _hub_snapshot(path / HUB_REPO_FOLDER)
    if (path / "snapshots").is_dir():
        return _hub_snapshot(path)
    return path  # reported by the caller with what it lacks


def _hub_snapshot(repo: Path) -> Path:
    snapshots = repo / "snapshots"
    ref = repo / "refs" / "main"
    if ref.is_file():
        named = snapshots / ref.read_text().strip()
        if named.is_dir():
            return named
    candidates = sorted(
        (p for p in snapshots.iterdir() if p.is_dir()) if snapshots.is_dir() else (),
        key=lambda p: p.stat().st_mtime,
    )
    if not candidates:
        raise SRError(f"{repo} holds no downloaded snapshot: snapshots/<revision>/{MODEL_INDEX_FILE} missing")
    return candidates[-1]


def _hub_cache_candidates() -> list[Path]:
    candidates = []
    if os.environ.get("HF_HUB_CACHE"):
        candidates.append(Path(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HF_HOME"):
        candidates.append(Path(os.environ["HF_HOME"]) / "hub")
    candidates += [Path.home() / ".cache" / "huggingface" / "hub", OFFICIAL_CACHE_DIR]
    return [c.expanduser() for c in candidates]


def find_default_sd_turbo() -> Path | None:
    """$SR_EXPORT_SD_TURBO as given, else the first hub cache holding models--stabilityai--sd-turbo:
    $HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub, ./weights (the official cache_dir)."""
    env = os.environ.get(SD_TURBO_ENV)
    if env:
        return Path(env).expanduser()
    for cache in _hub_cache_candidates():
        if (cache / HUB_REPO_FOLDER / "snapshots").is_dir():
            return cache / HUB_REPO_FOLDER
    return None


def weight_files(folder: Path) -> list[Path]:
    """The UNet, VAE and text encoder weight files that ``load_sd_turbo`` reads from a resolved folder."""
    return [_weights_file(folder, spec) for spec in _WEIGHTS]


def _weights_file(folder: Path, spec: _Weights) -> Path:
    for name in spec.file_names:
        if (folder / spec.subfolder / name).is_file():
            return folder / spec.subfolder / name
    raise SRError(f"SD-Turbo {spec.label}: {folder / spec.subfolder / spec.file_names[0]} missing")


def load_sd_turbo(
    path: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> SDTurbo:
    """All SD-Turbo components from local files only, in ``dtype`` on ``device``, eval mode.
    Anything missing, corrupt or inconsistent is an SRError naming the component and file."""
    folder = resolve_sd_turbo_folder(path)
    _check_model_index(folder)
    scheduler_config = _load_scheduler_config(folder)
    tokenizer = _load_tokenizer(folder)
    # transformers draws a progress bar per load; our own progress lines say what is loading.
    transformers_logging.disable_progress_bar()
    unet, vae, text_encoder = (_load_weights(folder, spec, dtype) for spec in _WEIGHTS)
    _check_consistency(folder, unet, vae, text_encoder, tokenizer)
    return SDTurbo(
        unet=unet.to(device).eval(),
        vae=vae.to(device).eval(),
        text_encoder=text_encoder.to(device).eval(),
        tokenizer=tokenizer,
        scheduler_config=scheduler_config,
        folder=folder,
    )


def _read_json(path: Path, what: str) -> Any:
    if not path.exists():
        raise SRError(f"SD-Turbo {what}: {path} missing")
    return read_json(path, f"SD-Turbo {what}:")


def _check_model_index(folder: Path) -> None:
    index = _read_json(folder / MODEL_INDEX_FILE, "pipeline index")
    if not isinstance(index, dict):
        raise SRError(f"SD-Turbo pipeline index: {folder / MODEL_INDEX_FILE} is not a JSON object")
    for component, accepted in EXPECTED_CLASSES.items():
        entry = index.get(component)
        class_name = entry[1] if isinstance(entry, list) and len(entry) == 2 else entry
        if class_name not in accepted:
            raise SRError(
                f"SD-Turbo {component}: {folder / MODEL_INDEX_FILE} names {class_name!r}, "
                f"expected {' or '.join(accepted)}"
            )


def _load_scheduler_config(folder: Path) -> dict:
    path = folder / SCHEDULER_CONFIG_FILE
    config = _read_json(path, "scheduler")
    if not isinstance(config, dict):
        raise SRError(f"SD-Turbo scheduler: {path} is not a JSON object")
    class_name = config.get("_class_name")
    if class_name != "EulerDiscreteScheduler":
        raise SRError(f"SD-Turbo scheduler: {path} is a {class_name!r}, expected EulerDiscreteScheduler")
    try:
        scheduler = EulerDiscreteScheduler.from_config(config)
    except Exception as exc:  # unknown beta_schedule etc. surface as assorted exception types
        raise SRError(
            f"SD-Turbo scheduler: {path} is not a usable Euler config ({_first_line(exc)})"
        ) from exc
    if scheduler.config.prediction_type != "epsilon":
        raise SRError(
            f"SD-Turbo scheduler: {path} has prediction_type {scheduler.config.prediction_type!r}; "
            "InvSR needs 'epsilon' (SD-Turbo's)"
        )
    return config


def _load_tokenizer(folder: Path) -> CLIPTokenizer:
    tokenizer_folder = folder / "tokenizer"
    if not any(all((tokenizer_folder / name).is_file() for name in names) for names in TOKENIZER_FILE_SETS):
        expected = " or ".join(" + ".join(names) for names in TOKENIZER_FILE_SETS)
        raise SRError(f"SD-Turbo tokenizer: {tokenizer_folder} lacks {expected}")
    try:
        return CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer", local_files_only=True)
    except Exception as exc:  # tokenizers/json/OS errors alike mean a damaged tokenizer folder
        raise SRError(f"SD-Turbo tokenizer: cannot load {tokenizer_folder} ({_first_line(exc)})") from exc


def _load_weights(folder: Path, spec: _Weights, dtype: torch.dtype) -> torch.nn.Module:
    _read_json(folder / spec.subfolder / "config.json", spec.label)
    weights = _weights_file(folder, spec)
    try:
        model, info = spec.model_class.from_pretrained(
            folder,
            subfolder=spec.subfolder,
            local_files_only=True,
            use_safetensors=weights.suffix == ".safetensors",
            variant="fp16" if ".fp16." in weights.name else None,
            output_loading_info=True,
            # Mis-shaped weights are then listed in ``info`` instead of raising a multi-line error.
            ignore_mismatched_sizes=True,
            **_library_arguments(spec, dtype),
        )
    except Exception as exc:  # safetensors, torch, json and config errors all mean a damaged file
        raise SRError(f"SD-Turbo {spec.label}: cannot load {weights} ({_first_line(exc)})") from exc
    _check_loading_info(info, weights, spec)
    return model


def _library_arguments(spec: _Weights, dtype: torch.dtype) -> dict[str, Any]:
    if spec.from_transformers:
        # transformers 5 renamed torch_dtype to dtype, and without it loads in the checkpoint's dtype.
        return {"dtype": dtype}
    # diffusers skips random init either way; this keeps the one loading path (and no accelerate warning).
    return {"torch_dtype": dtype, "low_cpu_mem_usage": False}


def _check_loading_info(info: dict[str, Any], weights: Path, spec: _Weights) -> None:
    # Both libraries only warn about missing or mis-shaped weights and leave them uninitialised; here
    # that would silently produce garbage images, so it is an error. Extra weights are ignored, as the
    # official loading does.
    missing = list(info.get("missing_keys") or [])
    mismatched = [
        f"{key} {tuple(stored)} vs {tuple(expected)}" for key, stored, expected in info.get("mismatched_keys") or []
    ]
    for problem, keys in (("missing", missing), ("mis-shaped", mismatched)):
        if keys:
            shown = ", ".join(sorted(keys)[:3]) + (", ..." if len(keys) > 3 else "")
            raise SRError(
                f"SD-Turbo {spec.label}: {weights} does not match {spec.subfolder}/config.json: "
                f"{len(keys)} {problem} weight{'s' if len(keys) > 1 else ''} ({shown})"
            )


def _check_consistency(
    folder: Path,
    unet: UNet2DConditionModel,
    vae: AutoencoderKL,
    text_encoder: CLIPTextModel,
    tokenizer: CLIPTokenizer,
) -> None:
    text = text_encoder.config
    checks = (
        (unet.config.cross_attention_dim == text.hidden_size,
         f"UNet cross_attention_dim {unet.config.cross_attention_dim} "
         f"!= text encoder hidden_size {text.hidden_size}"),
        (unet.config.in_channels == unet.config.out_channels == vae.config.latent_channels,
         f"UNet in/out channels {unet.config.in_channels}/{unet.config.out_channels} "
         f"!= VAE latent_channels {vae.config.latent_channels}"),
        (tokenizer.model_max_length == text.max_position_embeddings,
         f"tokenizer model_max_length {tokenizer.model_max_length} "
         f"!= text encoder max_position_embeddings {text.max_position_embeddings}"),
        (len(tokenizer) <= text.vocab_size,
         f"tokenizer has {len(tokenizer)} tokens but the text encoder only {text.vocab_size} embeddings"),
    )
    for ok, message in checks:
        if not ok:
            raise SRError(f"SD-Turbo components in {folder} do not belong together: {message}")


def encode_prompt(sd: SDTurbo, prompt: str = POSITIVE_PROMPT) -> torch.Tensor:
    """(1, 77, D) prompt embedding in the text encoder's dtype and device, as diffusers'
    ``StableDiffusionPipeline.encode_prompt`` computes it (clip_skip None: last_hidden_state)."""
    tokens = sd.tokenizer(
        prompt,
        padding="max_length",
        max_length=sd.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    device = sd.text_encoder.device
    # SD-Turbo's config does not ask for a mask: padding positions attend causally like any token.
    use_mask = getattr(sd.text_encoder.config, "use_attention_mask", False)
    attention_mask = tokens.attention_mask.to(device) if use_mask else None
    # no_grad, not inference_mode: callers may trace or export with this tensor as a constant.
    with torch.no_grad():
        hidden = sd.text_encoder(tokens.input_ids.to(device), attention_mask=attention_mask)[0]
    return hidden.to(sd.text_encoder.dtype)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0][:200] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
