"""Patch-adaptive sampling: every tile through the step group its difficulty asks for.

Tiles are scored and assigned in plan (row-major) order and queued per group; a group's queue runs as
one batch when it is full. The blend takes tiles in row-major order (it keeps only a band of rows), so
finished tiles wait until every earlier one is done; when more than a window of them wait, the queue
holding the earliest unfinished tile runs early, which bounds the memory whatever the groups look like.
Each tile draws its own noise (``TileNoise``), so its result is the one a uniform run of its group
gives, whatever batch it shares.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...family import TileProgress
from ...images import OutputFile, write_image
from .difficulty import assign_groups, tile_difficulty
from .noise import TileNoise
from .section import Geometry
from .tiling import TileBlender, TilePlan

log = logging.getLogger(__name__)
# Group colours of the steps map, fewest steps first (green, amber, red; more groups reuse the last).
MAP_COLOURS = np.array([[0.2, 0.8, 0.3], [1.0, 0.75, 0.1], [0.9, 0.2, 0.2], [0.6, 0.1, 0.7]], np.float32)


@dataclass(frozen=True)
class GroupPlan:
    groups: np.ndarray  # the group index of each tile, in plan order
    difficulties: np.ndarray

    def summary(self, group_steps: list[int]) -> str:
        counts = np.bincount(self.groups, minlength=len(group_steps))
        run = int(sum(group_steps[g] for g in self.groups))
        uniform = max(group_steps) * len(self.groups)
        per_group = ", ".join(f"{n} at {steps} step(s)" for n, steps in zip(counts, group_steps, strict=True))
        return f"{len(self.groups)} tiles: {per_group}; {run} tile-steps of the uniform {uniform}"


def _tile(padded: np.ndarray, plan: TilePlan, index: int) -> np.ndarray:
    y, x = plan.starts[index]
    return padded[:, y:y + plan.tile, x:x + plan.tile]


def plan_groups(padded: np.ndarray, plan: TilePlan, thresholds: tuple[float, ...]) -> GroupPlan:
    difficulties = np.array([tile_difficulty(_tile(padded, plan, i)) for i in range(len(plan.starts))])
    return GroupPlan(assign_groups(difficulties, thresholds), difficulties)


def run_adaptive(padded: np.ndarray, plan: TilePlan, groups: GroupPlan, run_tiles, batch: int, geometry: Geometry,
                 seed: int | None, blender: TileBlender, on_tiles_done: TileProgress | None) -> None:
    """Runs every tile through its group and adds it to ``blender``, in row-major order."""
    noise = TileNoise(seed)
    latent = geometry.latent_shape(1, plan.tile)[1:]
    total = len(plan.starts)
    per_row = sum(1 for y, _ in plan.starts if y == plan.starts[0][0])
    window = 2 * per_row + batch  # finished tiles allowed to wait for an earlier one
    queues: dict[int, list[int]] = {}
    results: dict[int, np.ndarray] = {}
    blended = 0

    def run(group: int) -> None:
        indices = queues.pop(group)
        noises = [noise.draw(i, latent) for i in indices]
        tiles = np.stack([_tile(padded, plan, i) for i in indices])
        out = run_tiles(tiles, np.stack([n[0] for n in noises]), np.stack([n[1] for n in noises]), group)
        results.update(zip(indices, out, strict=True))
        if on_tiles_done is not None:
            on_tiles_done(len(results) + blended, total)

    def blend_ready() -> None:
        nonlocal blended
        while blended in results:
            blender.add(results.pop(blended)[None], [plan.starts[blended]])
            blended += 1

    for index, group in enumerate(groups.groups.tolist()):
        queues.setdefault(group, []).append(index)
        if len(queues[group]) == batch:
            run(group)
        blend_ready()
        if len(results) > window:
            run(next(g for g, queued in queues.items() if blended in queued))
            blend_ready()
    for group in sorted(queues):
        run(group)
    blend_ready()


def write_steps_map(target: str | Path | OutputFile, lr: np.ndarray, plan: TilePlan, groups: np.ndarray) -> None:
    """A PNG of the LR image with each pixel tinted by the group of the tile whose centre is nearest."""
    rows = sorted({y for y, _ in plan.starts})
    cols = sorted({x for _, x in plan.starts})
    group_at = {start: int(g) for start, g in zip(plan.starts, groups, strict=True)}

    def owners(length: int, offset: int, starts: list[int]) -> np.ndarray:
        centres = np.array(starts) + plan.tile / 2
        return np.abs(np.arange(length)[:, None] + offset - centres[None, :]).argmin(axis=1)

    row_of, col_of = owners(plan.height, plan.pad_top, rows), owners(plan.width, plan.pad_left, cols)
    table = np.array([[group_at[(y, x)] for x in cols] for y in rows])
    colours = MAP_COLOURS[np.minimum(table[row_of][:, col_of], len(MAP_COLOURS) - 1)]
    gray = np.tensordot(np.array([0.299, 0.587, 0.114], np.float32), lr, axes=1)[..., None]
    file = OutputFile.of(target)
    write_image(file.path, 0.5 * gray + 0.5 * colours, replace=file.replace)
    log.info("wrote the steps map %s", file.path)
