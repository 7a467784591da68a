"""Reading PyTorch training checkpoints offline and safely, without the wrappers training adds to keys."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from sr_runtime.bounded_parse import regular_file
from sr_runtime.bundle_check import sha256_file
from sr_runtime.errors import SRError
from sr_runtime.manifest import CheckpointRecord

# DDP's "module." sits outside torch.compile's "_orig_mod.": the nesting the official reload_model
# builds (module._orig_mod.k); removing each optionally also covers bare "module.k" and "_orig_mod.k".
WRAPPER_PREFIXES = ("module.", "_orig_mod.")

# What weights_only refuses: a class (the file holds pickled objects) or an opcode (not a torch file).
_REFUSED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")
_REFUSED_OPERAND = re.compile(r"Unsupported operand \S+")


def file_record(path: Path) -> CheckpointRecord:
    """The manifest's record of a one-file checkpoint: its path and its sha256 by name."""
    return CheckpointRecord(str(path), {path.name: sha256_file(path)})


def load_checkpoint_dict(path: str | Path) -> dict[Any, Any]:
    """The state dict stored at ``path``: ``torch.load(weights_only=True)`` on the CPU, with a
    ``{'state_dict': ...}`` wrapper removed as the official sampler does. Every failure is an SRError."""
    path = Path(path)
    regular_file(path, "checkpoint")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load fails with many types (IndexError, KeyError, EOFError...) on junk
        raise SRError(_load_failure_message(path, exc)) from exc
    if isinstance(loaded, dict) and "state_dict" in loaded:
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict):
        raise SRError(f"checkpoint {path} holds a {type(loaded).__name__}, not a state dict of tensors")
    return loaded


def _load_failure_message(path: Path, exc: Exception) -> str:
    text = str(exc)
    refused = _REFUSED_GLOBAL.search(text)
    if refused:
        return (
            f"checkpoint {path} holds pickled Python objects ({refused.group(1)}) that "
            "torch.load(weights_only=True) refuses to load; re-save only the model's state_dict"
        )
    operand = _REFUSED_OPERAND.search(text)
    detail = operand.group(0) if operand else (text.strip().splitlines() or [""])[0][:120]
    return f"{path} is not a PyTorch checkpoint (torch.load: {type(exc).__name__}{': ' if detail else ''}{detail})"


def unwrapped_key(key: str) -> str:
    for prefix in WRAPPER_PREFIXES:
        key = key.removeprefix(prefix)
    return key


def strip_wrapper_prefixes(state: dict[Any, Any], source: str | Path) -> dict[str, Any]:
    """``state`` with DDP / torch.compile prefixes removed; entries whose key is not a string are dropped
    (they cannot name a parameter). Two keys that unwrap to the same name are an SRError, not a silent pick."""
    stripped: dict[str, Any] = {}
    original: dict[str, str] = {}
    for key, value in state.items():
        if not isinstance(key, str):
            continue
        name = unwrapped_key(key)
        if name in stripped:
            raise SRError(f"checkpoint {source}: keys {original[name]!r} and {key!r} both stand for {name!r}")
        stripped[name] = value
        original[name] = key
    return stripped
