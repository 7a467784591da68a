"""Typed access to the dict a LoRA family's training code saves (``torch.save`` of ranks, module-name lists and
state dicts), loaded without executing code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sr_runtime.checks import is_int
from sr_runtime.errors import SRError

from .lora import Targets


class CheckpointReader:
    """Typed access to the loaded dict; every problem is one line naming the file and the entry."""

    def __init__(self, path: Path, data: dict[Any, Any], expected: str):
        self.path = path
        self.data = data
        self.expected = expected  # what the file should be, for the messages

    def fail(self, what: str) -> SRError:
        return SRError(f"{self.path}: {what}; expected {self.expected}")

    def get(self, key: str, container: dict[Any, Any] | None = None, where: str = "") -> Any:
        container = self.data if container is None else container
        if key not in container:
            raise self.fail(f"no {where}{key!r} entry")
        return container[key]

    def rank(self, key: str) -> int:
        value = self.get(key)
        if not is_int(value, 1):
            raise self.fail(f"{key!r} is {value!r}, not a positive LoRA rank")
        return value

    def targets(self, key: str) -> Targets:
        value = self.get(key)
        if isinstance(value, str):
            return Targets(value)
        if isinstance(value, list | tuple | set) and value and all(isinstance(v, str) for v in value):
            return Targets(None, tuple(sorted(value)))
        raise self.fail(f"{key!r} is {type(value).__name__}, not a module-name pattern or a list of names")

    def tensors(self, key: str, container: dict[Any, Any] | None = None, where: str = "") -> dict[str, torch.Tensor]:
        value = self.get(key, container, where)
        if not isinstance(value, dict) or not value:
            raise self.fail(f"{where}{key!r} is not a state dict")
        bad = [k for k, v in value.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
        if bad:
            raise self.fail(f"{where}{key!r} holds {bad[0]!r}, which is not a named tensor")
        return {k: v.detach().float() for k, v in value.items()}
