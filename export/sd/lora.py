"""PEFT LoRA as the SD families' checkpoints store it: the target rule, the weights of one adapted layer
(``<layer>.lora_A.<adapter>.weight``, ``lora_B``) and the static merge of a LoRA into its layer."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from sr_runtime.errors import SRError

PEFT_LORA_ALPHA = 8  # peft.LoraConfig's default, which the SD families' configs keep (their checkpoints store no alpha)


@dataclass(frozen=True)
class Targets:
    """PEFT's ``target_modules``: a regular expression matched against the whole module name, or names that
    match a module name equal to them or ending in ``.<name>``."""

    pattern: str | None
    names: tuple[str, ...] = ()

    def match(self, module_name: str) -> bool:
        if self.pattern is not None:
            return re.fullmatch(self.pattern, module_name) is not None
        return any(self.match_name(module_name, name) for name in self.names)

    @staticmethod
    def match_name(module_name: str, name: str) -> bool:
        return module_name == name or module_name.endswith(f".{name}")



def weight_keys(key: str, adapter: str | None = None) -> tuple[str, str]:
    """The state keys of the LoRA on layer ``key``: ``<key>.lora_A[.<adapter>].weight`` and its lora_B."""
    infix = "" if adapter is None else f".{adapter}"
    return f"{key}.lora_A{infix}.weight", f"{key}.lora_B{infix}.weight"


def lora_layers(base: nn.Module, key: str, state: dict[str, torch.Tensor], rank: int, source: str,
                adapter: str | None = None) -> tuple[nn.Module, nn.Module]:
    """The down (A) and up (B) layers of the LoRA on ``base``, from ``state``'s weights of ``adapter`` (None: keys
    without adapter names), shape-checked against ``rank`` and the layer."""
    if not isinstance(base, nn.Conv2d | nn.Linear):
        raise SRError(f"{source}: LoRA target {key} is a {type(base).__name__}; PEFT adapts Conv2d and Linear layers")
    a_key, b_key = weight_keys(key, adapter)
    a, b = state.get(a_key), state.get(b_key)
    if a is None or b is None:
        raise SRError(f"{source}: no LoRA weights {a_key} / {b_key} for the targeted layer")
    if isinstance(base, nn.Conv2d):
        down = nn.Conv2d(base.in_channels, rank, base.kernel_size, base.stride, base.padding, bias=False)
        up = nn.Conv2d(rank, base.out_channels, 1, 1, bias=False)
    else:
        down, up = nn.Linear(base.in_features, rank, bias=False), nn.Linear(rank, base.out_features, bias=False)
    for module, weight, which in ((down, a, "lora_A"), (up, b, "lora_B")):
        if tuple(weight.shape) != tuple(module.weight.shape):
            raise SRError(f"{source}: {key}.{which} weight has shape {tuple(weight.shape)}, rank {rank} and the layer "
                          f"need {tuple(module.weight.shape)} (wrong LoRA rank?)")
        module.weight.data.copy_(weight)
    return down, up


def without_adapter_name(state: dict[str, torch.Tensor], adapter: str, source: str) -> dict[str, torch.Tensor]:
    """``<layer>.lora_A.<adapter>.weight`` -> ``<layer>.lora_A.weight``; other keys as they are."""
    renamed = {}
    for key, value in state.items():
        parts = key.split(".")
        if len(parts) >= 3 and parts[-3] in ("lora_A", "lora_B"):
            if parts[-2] != adapter:
                raise SRError(f"{source}: {key} belongs to adapter {parts[-2]!r}; the official code names it {adapter!r}")
            key = ".".join(parts[:-2] + parts[-1:])
        renamed[key] = value
    return renamed


def lora_delta(up: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    """B A for an up weight (out, r) and a down weight (r, in[, kh, kw]): what a LoRA of scale 1 adds to W."""
    return torch.einsum("or,r...->o...", up, down)


def merge_lora(network: nn.Module, state: dict[str, torch.Tensor], adapter: str, targets: Targets, rank: int,
               source: str) -> set[str]:
    """Folds the LoRA of ``adapter`` into every layer of ``network`` the targets match, as PEFT's merge_and_unload
    does (W += alpha / r * B A); returns the state keys it used. A target naming no layer is refused: PEFT
    refuses it too."""
    scale = PEFT_LORA_ALPHA / rank
    used: set[str] = set()
    matched = []
    for name, base in network.named_modules():
        if not targets.match(name):
            continue
        down, up = lora_layers(base, name, state, rank, source, adapter)
        with torch.no_grad():
            base.weight += (lora_delta(up.weight.flatten(1), down.weight) * scale).to(base.weight.dtype)
        used.update(weight_keys(name, adapter))
        matched.append(name)
    for target in targets.names:
        if not any(targets.match_name(name, target) for name in matched):
            raise SRError(f"{source}: the {adapter} LoRA targets {target!r}, which is no layer of the network")
    return used


def lora_parameter_count(network: nn.Module, targets: Targets, rank: int, prefix: str = "") -> int:
    """How many weights a rank-``rank`` LoRA on every layer of ``network`` the targets match has (A and B): from the
    layers' shapes alone, so the network may live on the meta device."""
    count = 0
    for name, module in network.named_modules():
        if targets.match(prefix + name) and isinstance(module, nn.Conv2d | nn.Linear):
            fan_in = module.weight[0].numel()  # in_features, or in_channels * kernel area
            count += rank * (fan_in + module.weight.shape[0])
    return count
