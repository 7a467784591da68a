"""What a model family contributes to ``sr-export build``, and InvSR's contribution.

``build_bundle`` is family-blind: it asks the source for a ``FamilyBuild`` (``source.plan_build``)
and exports, builds and records what that lists. A model source (``sources.ModelSource`` for InvSR,
``rrdbnet_source.RRDBNetSource``) provides:

- ``components`` (what the graph specs' ``make_module`` take), ``demo``, ``checkpoints`` (name ->
  path and sha256s, for the manifest), ``name`` and ``fingerprint()`` (the ONNX cache key);
- ``plan_build(opts, report) -> FamilyBuild``.

The runtime side of a family is ``sr_runtime.family.Family``, chosen by the manifest's
``pipeline.family`` (``FamilyBuild.pipeline.family``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sr_runtime.manifest import PROMPT_EMBEDS_NAME, PipelineInfo
from sr_runtime.upscale import LATENT_CHANNELS, SCALE, check_tile

from .graphs import INVSR_GRAPHS, GraphSpec, sizes
from .schedule import build_schedule, resolve_timesteps

Report = Callable[[str], None]


def _no_files(folder: Path) -> None:
    pass


@dataclass(frozen=True)
class FamilyBuild:
    """One family's part of a bundle."""

    graphs: tuple[GraphSpec, ...]  # exported, built and recorded in this order
    sizes: Callable[[int], dict[str, int]]  # batch -> the symbolic dimensions' values (samples, profiles)
    pipeline: PipelineInfo  # its family picks the runtime chain
    stem: str  # the default bundle folder is engines/<stem>-<backend>-<precision>
    summary: str  # the family's part of the build's first report line
    write_files: Callable[[Path], None] = _no_files  # extra bundle files (InvSR: the prompt embeddings)
    # Check fp16 graphs on their sample inputs and export fp32 instead when the output overflows.
    fp16_fallback: bool = False


def invsr_build(source, opts, report: Report) -> FamilyBuild:
    """The schedule, the prompt embeddings and the four graphs of InvSR."""
    import torch

    from .models.sd_turbo import POSITIVE_PROMPT, encode_prompt

    check_tile(opts.tile)
    schedule = build_schedule(source.components.scheduler_config, resolve_timesteps(opts.steps, opts.cli_timesteps))
    with torch.inference_mode():
        embeds = encode_prompt(source.components.sd_turbo).float().cpu().numpy()
    embed = embeds.shape[-1]
    pipeline = PipelineInfo(
        family="invsr",
        scale=SCALE,
        tile=opts.tile,
        batch=opts.batch,
        latent_channels=LATENT_CHANNELS,
        latent_scale=source.components.latent_scale,
        cli_timesteps=list(schedule.cli_timesteps),
        timesteps=list(schedule.timesteps),
        sigmas=list(schedule.sigmas),
        prompt=POSITIVE_PROMPT,
        embed_shape=list(embeds.shape),
    )
    return FamilyBuild(
        graphs=INVSR_GRAPHS,
        sizes=lambda batch: sizes(batch, opts.tile, embed),
        pipeline=pipeline,
        stem=f"{source.name}-s{schedule.steps}",
        summary=f"timesteps {list(schedule.cli_timesteps)}",
        write_files=lambda folder: np.save(folder / PROMPT_EMBEDS_NAME, embeds),
    )
