"""An SD release (UNet, VAE, CLIP text encoder, tokenizer, scheduler config) read offline from the folders the
official code and the Hugging Face hub leave on disk.

The official samplers call ``from_pretrained(<repo id>, cache_dir=...)``, so a real install is a hub cache; a
plain diffusers folder (``save_pretrained`` output) is accepted too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer
from transformers.utils import logging as transformers_logging

from sr_runtime.bounded_parse import read_json
from sr_runtime.bundle_check import sha256_file
from sr_runtime.errors import SRError
from sr_runtime.manifest import CheckpointRecord

from .models import SDModel

MODEL_INDEX_FILE = "model_index.json"
SCHEDULER_CONFIG_FILE = "scheduler/scheduler_config.json"
SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
# The classes the official pipelines instantiate from model_index.json (the scheduler's is the release's own).
EXPECTED_CLASSES = {
    "unet": ("UNet2DConditionModel",),
    "vae": ("AutoencoderKL",),
    "text_encoder": ("CLIPTextModel",),
    "tokenizer": ("CLIPTokenizer", "CLIPTokenizerFast"),
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
class SDComponents:
    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    scheduler_config: dict
    folder: Path
    model: SDModel


def _expected_layout(model: SDModel) -> str:
    return (f"a diffusers folder ({MODEL_INDEX_FILE}, {'/, '.join(SUBFOLDERS)}/) "
            f"or a Hugging Face cache holding {model.hub_folder}")


def resolve_sd_folder(path: str | Path, model: SDModel) -> Path:
    """The diffusers folder at ``path``: the folder itself, or the snapshot of a hub cache
    (``<cache>/models--<org>--<name>`` or that folder itself) named by refs/main, else the newest."""
    path = Path(path).expanduser()
    if not path.exists():
        raise SRError(f"{model.label} path {path} does not exist; expected {_expected_layout(model)}")
    if not path.is_dir():
        raise SRError(f"{model.label} path {path} is a file; expected {_expected_layout(model)}")
    folder = _diffusers_folder_in(path, model)
    required = (MODEL_INDEX_FILE, *(f"{subfolder}/" for subfolder in SUBFOLDERS))
    missing = [name for name in required if not (folder / name).exists()]
    if missing:
        raise SRError(f"{folder} is not an {model.label} folder: {', '.join(missing)} missing; "
                      f"expected {_expected_layout(model)}")
    return folder


def _diffusers_folder_in(path: Path, model: SDModel) -> Path:
    if (path / MODEL_INDEX_FILE).is_file():
        return path
    if (path / model.hub_folder).is_dir():
        return _hub_snapshot(path / model.hub_folder)
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


def _hub_cache_candidates(model: SDModel) -> list[Path]:
    candidates = []
    if os.environ.get("HF_HUB_CACHE"):
        candidates.append(Path(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HF_HOME"):
        candidates.append(Path(os.environ["HF_HOME"]) / "hub")
    candidates += [Path.home() / ".cache" / "huggingface" / "hub", model.official_cache_dir]
    return [c.expanduser() for c in candidates]


def find_default_sd(model: SDModel) -> Path | None:
    """The model's variable as given, else the first hub cache holding its repository: $HF_HUB_CACHE,
    $HF_HOME/hub, ~/.cache/huggingface/hub, the official scripts' download folder."""
    env = os.environ.get(model.env)
    if env:
        return Path(env).expanduser()
    for cache in _hub_cache_candidates(model):
        if (cache / model.hub_folder / "snapshots").is_dir():
            return cache / model.hub_folder
    return None


def weight_files(folder: Path, model: SDModel) -> list[Path]:
    """The UNet, VAE and text encoder weight files that ``load_sd`` reads from a resolved folder."""
    return [_Reader(folder, model).weights_file(spec) for spec in _WEIGHTS]


def folder_record(path: str | Path, model: SDModel) -> CheckpointRecord:
    """The manifest's record of a release: its resolved folder and the sha256 of each weight file ``load_sd``
    reads, by its path in the folder."""
    folder = resolve_sd_folder(path, model)
    return CheckpointRecord(str(folder), {str(f.relative_to(folder)): sha256_file(f) for f in weight_files(folder, model)})


def load_sd(path: str | Path, model: SDModel, dtype: torch.dtype = torch.float32,
            device: str | torch.device = "cpu") -> SDComponents:
    """All components of the release from local files only, in ``dtype`` on ``device``, eval mode.
    Anything missing, corrupt or inconsistent is an SRError naming the component and file."""
    reader = _Reader(resolve_sd_folder(path, model), model)
    reader.check_model_index()
    scheduler_config = reader.scheduler_config()
    tokenizer = reader.tokenizer()
    # transformers draws a progress bar per load; our own progress lines say what is loading.
    transformers_logging.disable_progress_bar()
    unet, vae, text_encoder = (reader.weights(spec, dtype) for spec in _WEIGHTS)
    reader.check_consistency(unet, vae, text_encoder, tokenizer)
    return SDComponents(
        unet=unet.to(device).eval(),
        vae=vae.to(device).eval(),
        text_encoder=text_encoder.to(device).eval(),
        tokenizer=tokenizer,
        scheduler_config=scheduler_config,
        folder=reader.folder,
        model=model,
    )


class _Reader:
    """One release's resolved folder; every message names the release, the component and the file."""

    def __init__(self, folder: Path, model: SDModel):
        self.folder = folder
        self.model = model

    def error(self, what: str, problem: str) -> SRError:
        return SRError(f"{self.model.label} {what}: {problem}")

    def json(self, path: Path, what: str) -> Any:
        if not path.exists():
            raise self.error(what, f"{path} missing")
        return read_json(path, f"{self.model.label} {what}:")

    def check_model_index(self) -> None:
        path = self.folder / MODEL_INDEX_FILE
        index = self.json(path, "pipeline index")
        if not isinstance(index, dict):
            raise self.error("pipeline index", f"{path} is not a JSON object")
        for component, accepted in {**EXPECTED_CLASSES, "scheduler": (self.model.scheduler,)}.items():
            entry = index.get(component)
            class_name = entry[1] if isinstance(entry, list) and len(entry) == 2 else entry
            if class_name not in accepted:
                raise self.error(component, f"{path} names {class_name!r}, expected {' or '.join(accepted)}")

    def scheduler_config(self) -> dict:
        path = self.folder / SCHEDULER_CONFIG_FILE
        config = self.json(path, "scheduler")
        if not isinstance(config, dict):
            raise self.error("scheduler", f"{path} is not a JSON object")
        expected = self.model.scheduler
        class_name = config.get("_class_name")
        if class_name != expected:
            raise self.error("scheduler", f"{path} is a {class_name!r}, expected {expected}")
        try:
            scheduler = getattr(diffusers, expected).from_config(config)
        except Exception as exc:  # unknown beta_schedule etc. surface as assorted exception types
            raise self.error("scheduler", f"{path} is not a usable {expected} config ({_first_line(exc)})") from exc
        if scheduler.config.prediction_type != "epsilon":
            raise self.error("scheduler", f"{path} has prediction_type {scheduler.config.prediction_type!r}; "
                                          f"the SD families need 'epsilon' ({self.model.label}'s)")
        return config

    def tokenizer(self) -> CLIPTokenizer:
        tokenizer_folder = self.folder / "tokenizer"
        if not any(all((tokenizer_folder / name).is_file() for name in names) for names in TOKENIZER_FILE_SETS):
            expected = " or ".join(" + ".join(names) for names in TOKENIZER_FILE_SETS)
            raise self.error("tokenizer", f"{tokenizer_folder} lacks {expected}")
        try:
            return CLIPTokenizer.from_pretrained(self.folder, subfolder="tokenizer", local_files_only=True)
        except Exception as exc:  # tokenizers/json/OS errors alike mean a damaged tokenizer folder
            raise self.error("tokenizer", f"cannot load {tokenizer_folder} ({_first_line(exc)})") from exc

    def weights_file(self, spec: _Weights) -> Path:
        for name in spec.file_names:
            if (self.folder / spec.subfolder / name).is_file():
                return self.folder / spec.subfolder / name
        raise self.error(spec.label, f"{self.folder / spec.subfolder / spec.file_names[0]} missing")

    def weights(self, spec: _Weights, dtype: torch.dtype) -> torch.nn.Module:
        self.json(self.folder / spec.subfolder / "config.json", spec.label)
        weights = self.weights_file(spec)
        try:
            model, info = spec.model_class.from_pretrained(
                self.folder,
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
            raise self.error(spec.label, f"cannot load {weights} ({_first_line(exc)})") from exc
        self.check_loading_info(info, weights, spec)
        return model

    def check_loading_info(self, info: dict[str, Any], weights: Path, spec: _Weights) -> None:
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
                raise self.error(spec.label, f"{weights} does not match {spec.subfolder}/config.json: "
                                             f"{len(keys)} {problem} weight{'s' if len(keys) > 1 else ''} ({shown})")

    def check_consistency(self, unet: UNet2DConditionModel, vae: AutoencoderKL, text_encoder: CLIPTextModel,
                          tokenizer: CLIPTokenizer) -> None:
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
                raise SRError(f"{self.model.label} components in {self.folder} do not belong together: {message}")


def _library_arguments(spec: _Weights, dtype: torch.dtype) -> dict[str, Any]:
    if spec.from_transformers:
        # transformers 5 renamed torch_dtype to dtype, and without it loads in the checkpoint's dtype.
        return {"dtype": dtype}
    # diffusers skips random init either way; this keeps the one loading path (and no accelerate warning).
    return {"torch_dtype": dtype, "low_cpu_mem_usage": False}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0][:200] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
