"""The VAE as the official tiled VAE runs it (``build_task_queue`` in ``my_utils/vaehook.py``, which S3Diff and
OSEDiff carry): a queue of tasks (convolutions, SiLU, residual stores and adds, group norms), cut here into
segments at each group norm. A segment applies its norm with the statistics gathered over all tiles, then runs up
to the next norm; the runtime's ``tiled_vae`` loop runs the segments over the tiles. A family may condition the
encoder (S3Diff modulates its LoRA by deg_score): each encoder segment then takes the conditioning inputs first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sr_runtime.errors import SRError
from sr_runtime.graph_io import TensorIO
from sr_runtime.sd.vae_graphs import DECODER, ENCODER, segment_io
from sr_runtime.sd.vae_segment import Resize, VAESegment

from ..graph_spec import GraphSpec
from .stages import DecoderEntry, quantized_moments, to_unit_range


class Task(Enum):
    CALL = "call"
    SILU = "silu"
    STORE = "store_res"  # keep the residual (through the shortcut, if any) for the next ADD
    ADD = "add_res"
    NORM = "pre_norm"


@dataclass(frozen=True)
class Step:
    task: Task
    module: nn.Module | None = None


class AttentionCore(nn.Module):
    """The VAE's single attention without its norm and residual (``attn_forward_new``)."""

    def __init__(self, attention: nn.Module):
        super().__init__()
        self.attention = attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.attention
        n, c, h, w = x.shape
        tokens = x.reshape(n, c, h * w).transpose(1, 2)

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(n, h * w, a.heads, -1).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(a.to_q(tokens)), heads(a.to_k(tokens)), heads(a.to_v(tokens)))
        out = a.to_out[1](a.to_out[0](out.transpose(1, 2).reshape(n, h * w, -1)))
        return out.transpose(1, 2).reshape(n, c, h, w)


def _resnet(block: nn.Module) -> list[Step]:
    if block.time_emb_proj is not None or block.output_scale_factor != 1:
        raise SRError("the VAE's resnet blocks take a time embedding or rescale their output; the official tiled VAE "
                      "does neither")
    return [Step(Task.STORE, block.conv_shortcut), Step(Task.NORM, block.norm1), Step(Task.SILU),
            Step(Task.CALL, block.conv1), Step(Task.NORM, block.norm2), Step(Task.SILU), Step(Task.CALL, block.conv2),
            Step(Task.ADD)]


def _mid(block: nn.Module) -> list[Step]:
    steps = _resnet(block.resnets[0])
    for attention, resnet in zip(block.attentions, block.resnets[1:], strict=True):
        if attention is not None:
            steps += [Step(Task.STORE), Step(Task.NORM, attention.group_norm), Step(Task.CALL, AttentionCore(attention)),
                      Step(Task.ADD)]
        steps += _resnet(resnet)
    return steps


def _levels(blocks: nn.ModuleList, resampler: str) -> list[Step]:
    steps: list[Step] = []
    for block in blocks:
        for resnet in block.resnets:
            steps += _resnet(resnet)
        for module in getattr(block, resampler) or ():
            steps.append(Step(Task.CALL, module))
    return steps


def task_queue(network: nn.Module, decoder: bool) -> list[Step]:
    """The encoder's or decoder's tasks in the official order."""
    steps = [Step(Task.CALL, network.conv_in)]
    if decoder:
        steps += _mid(network.mid_block) + _levels(network.up_blocks, "upsamplers")
    else:
        steps += _levels(network.down_blocks, "downsamplers") + _mid(network.mid_block)
    return steps + [Step(Task.NORM, network.conv_norm_out), Step(Task.SILU), Step(Task.CALL, network.conv_out)]


def _normalized(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """custom_group_norm: the group norm with the given (gathered) statistics, in fp32."""
    n, c = x.shape[:2]
    grouped = x.float().reshape(n, norm.num_groups, -1)
    out = (grouped - mean.float()[..., None]) / torch.sqrt(var.float()[..., None] + norm.eps)
    out = out.reshape(x.shape) * norm.weight.float()[None, :, None, None] + norm.bias.float()[None, :, None, None]
    return out.to(x.dtype)


class SegmentStage(nn.Module):
    """One segment: [entry (the decoder's x0 step) or conditioning (the encoder's)] -> its norm -> its tasks ->
    [exit]; the residual pending at its end is packed after its output channels."""

    def __init__(self, input_names: tuple[str, ...], norm: nn.GroupNorm | None, steps: list[Step],
                 entry: nn.Module | None, condition: Conditioning | None, exit: nn.Module | None):
        super().__init__()
        self.input_names = input_names
        self.norm = norm
        self.calls = nn.ModuleList(step.module for step in steps if step.module is not None)
        self.tasks = [(step.task, step.module is not None) for step in steps]
        self.entry = entry
        self.modulate = None if condition is None else condition.module
        self.conditioned_by = () if condition is None else tuple(t.name for t in condition.inputs)
        self.exit = exit

    def run(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(output, the residual pending at the end or None) of the named inputs."""
        x = inputs["x"]
        if self.modulate is not None:
            self.modulate(*(inputs[name] for name in self.conditioned_by))
        if self.entry is not None:
            x = self.entry(x, inputs["eps"])
        if self.norm is not None:
            x = _normalized(x, inputs["mean"], inputs["var"], self.norm)
        residual = inputs.get("residual")
        calls = iter(self.calls)
        for task, has_module in self.tasks:
            module = next(calls) if has_module else None
            if task is Task.CALL:
                x = module(x)
            elif task is Task.SILU:
                x = F.silu(x)
            elif task is Task.STORE:
                residual = x if module is None else module(x)
            else:  # Task.ADD
                x, residual = x + residual, None
        if self.exit is not None:
            x = self.exit(x)
        return x, residual

    def forward(self, *values: torch.Tensor) -> torch.Tensor:
        x, residual = self.run(dict(zip(self.input_names, values, strict=True)))
        return x if residual is None else torch.cat([x, residual], dim=1)


@dataclass
class SegmentPlan:
    norm: nn.GroupNorm | None  # the group norm it starts with (None: the first segment)
    steps: list[Step]


def _split(steps: list[Step]) -> list[SegmentPlan]:
    plans = [SegmentPlan(None, [])]
    for step in steps:
        if step.task is Task.NORM:
            plans.append(SegmentPlan(step.module, []))
        else:
            plans[-1].steps.append(step)
    return plans


@dataclass
class VAESegments:
    """One network's segments: the manifest's records and the torch modules traced to their graphs."""

    records: list[VAESegment]
    modules: list[SegmentStage]


class QuantConv(nn.Module):
    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return quantized_moments(self.vae, x)


class UnitRange(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return to_unit_range(x)


@dataclass(frozen=True)
class Conditioning:
    """What conditions the encoder: a module called with the named inputs before each segment runs."""

    module: nn.Module
    inputs: tuple[TensorIO, ...]
    samples: tuple[torch.Tensor, ...]  # one value of each input, for measuring the segments


@dataclass(frozen=True)
class SegmentedVAE:
    """A family's VAE and what its segments need besides it."""

    vae: nn.Module
    latent_channels: int
    vae_factor: int
    decoder_entry: DecoderEntry
    conditioning: Conditioning | None = None


@torch.no_grad()
def build_segments(v: SegmentedVAE, kind: str) -> VAESegments:
    """The segments of the ENCODER or DECODER, their channels and resizing measured on a small zero tile."""
    vae = v.vae
    decoder = kind == DECODER
    plans = _split(task_queue(vae.decoder if decoder else vae.encoder, decoder))
    size = 2 if decoder else 2 * v.vae_factor
    x = torch.zeros(1, v.latent_channels if decoder else vae.config.in_channels, size, size)
    inputs: dict[str, torch.Tensor] = {"eps": torch.zeros_like(x)}
    condition = None if decoder else v.conditioning
    if condition is not None:
        inputs.update({t.name: sample for t, sample in zip(condition.inputs, condition.samples, strict=True)})
    records, modules = [], []
    for index, plan in enumerate(plans):
        last = index == len(plans) - 1
        module = SegmentStage((), plan.norm, plan.steps,
                              entry=v.decoder_entry if decoder and index == 0 else None, condition=condition,
                              exit=(UnitRange() if decoder else QuantConv(vae)) if last else None)
        if plan.norm is not None:
            inputs["mean"] = inputs["var"] = torch.ones(1, plan.norm.num_groups)
        out, residual = module.run({**inputs, "x": x})
        resize = Resize.UP if out.shape[2] > x.shape[2] else Resize.DOWN if out.shape[2] < x.shape[2] else Resize.NONE
        record = VAESegment(
            in_channels=x.shape[1], out_channels=out.shape[1],
            norm_groups=plan.norm.num_groups if plan.norm is not None else None,
            next_groups=None if last else plans[index + 1].norm.num_groups,
            residual_in=inputs["residual"].shape[1] if "residual" in inputs else None,
            residual_out=None if residual is None else residual.shape[1], resize=resize)
        io = segment_io(kind, index, record, () if condition is None else condition.inputs)
        module.input_names = tuple(t.name for t in io.inputs)
        records.append(record)
        modules.append(module)
        x = out
        inputs.pop("residual", None)
        if residual is not None:
            inputs["residual"] = residual
    return VAESegments(records, modules)


def segment_specs(encoder: list[VAESegment], decoder: list[VAESegment], segments_of: Callable[[Any, str], VAESegments],
                  conditioning: tuple[TensorIO, ...] = (), unit_range: frozenset[str] = frozenset()
                  ) -> tuple[GraphSpec, ...]:
    """One graph per segment of a section's tiled VAE (group statistics of mean 0, variance 1 as samples);
    ``segments_of(components, kind)`` gives a family's built segments."""
    return tuple(
        GraphSpec(segment_io(kind, index, record, conditioning if kind == ENCODER else ()),
                  lambda c, kind=kind, index=index: segments_of(c, kind).modules[index],
                  f"tiled VAE {kind} segment {index}: gathered group norm -> up to the next norm",
                  constants={"mean": 0.0, "var": 1.0}, unit_range=unit_range)
        for kind, records in ((ENCODER, encoder), (DECODER, decoder))
        for index, record in enumerate(records))
