"""The VAE as the official tiled VAE runs it (``build_task_queue`` in ``src/my_utils/vaehook.py``): a queue of
tasks (convolutions, SiLU, residual stores and adds, group norms), cut here into segments at each group
norm. A segment applies its norm with the statistics gathered over all tiles, then runs up to the next
norm; the runtime's ``tiled_vae`` loop runs the segments over the tiles.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch
import torch.nn.functional as F
from torch import nn

from sr_runtime.errors import SRError
from sr_runtime.families.s3diff.graphs import segment_io
from sr_runtime.sd.vae_segment import Resize, VAESegment

from .components import S3DiffComponents
from .stages import DecoderEntry, EncoderModulation, quantized_moments, to_unit_range


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
    """One segment: [entry (the decoder's x0 step) or modulation (the encoder's)] -> its norm -> its tasks ->
    [exit]; the residual pending at its end is packed after its output channels."""

    def __init__(self, input_names: tuple[str, ...], norm: nn.GroupNorm | None, steps: list[Step],
                 entry: nn.Module | None, modulate: nn.Module | None, exit: nn.Module | None):
        super().__init__()
        self.input_names = input_names
        self.norm = norm
        self.calls = nn.ModuleList(step.module for step in steps if step.module is not None)
        self.tasks = [(step.task, step.module is not None) for step in steps]
        self.entry = entry
        self.modulate = modulate
        self.exit = exit

    def run(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(output, the residual pending at the end or None) of the named inputs."""
        x = inputs["x"]
        if self.modulate is not None:
            self.modulate(inputs["deg_score"])
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


def segments_of(c: S3DiffComponents, kind: str) -> VAESegments:
    """The segments of the "encoder" or "decoder" of ``c``, built once."""
    if kind not in c.vae_segments:
        c.vae_segments[kind] = _build(c, kind)
    return c.vae_segments[kind]


@torch.no_grad()
def _build(c: S3DiffComponents, kind: str) -> VAESegments:
    """The segments, their channels and resizing measured on a small zero tile."""
    vae = c.sd_turbo.vae
    decoder = kind == "decoder"
    plans = _split(task_queue(vae.decoder if decoder else vae.encoder, decoder))
    size = 2 if decoder else 2 * c.vae_factor
    x = torch.zeros(1, c.latent_channels if decoder else vae.config.in_channels, size, size)
    inputs: dict[str, torch.Tensor] = {"deg_score": torch.zeros(1, 2), "eps": torch.zeros_like(x)}
    records, modules = [], []
    for index, plan in enumerate(plans):
        last = index == len(plans) - 1
        module = SegmentStage((), plan.norm, plan.steps,
                              entry=DecoderEntry(c) if decoder and index == 0 else None,
                              modulate=None if decoder else EncoderModulation(c),
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
        module.input_names = tuple(t.name for t in segment_io(kind, index, record).inputs)
        records.append(record)
        modules.append(module)
        x = out
        inputs.pop("residual", None)
        if residual is not None:
            inputs["residual"] = residual
    return VAESegments(records, modules)
