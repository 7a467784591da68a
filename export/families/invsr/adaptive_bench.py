"""``sr-export bench adaptive``: patch-adaptive sampling against uniform 1, 3 and 5 steps on a synthetic
image whose quadrants differ (flat, noisy, textured, blurred), one adaptive bundle (groups 1, 3, 5),
the same engines for every run: wall time, tile-steps run, tiles per group, the estimator's cost.
Random full-size weights by default: the times are real, the quality says nothing (see
``scripts/adaptive_quality.py`` for real checkpoints)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np

from sr_runtime.families.invsr.adaptive import plan_groups
from sr_runtime.families.invsr.difficulty import default_thresholds
from sr_runtime.families.invsr.tiling import pad_image, plan_tiles
from sr_runtime.precision import Precision

from ...bench.measure import machine, time_calls
from .options import CHECKPOINTS
from .synthetic import mixed_image

MODES = (1, 3, 5, "auto")


def _estimator_ms(image: np.ndarray, tile: int, pad_multiple: int, groups: int) -> tuple[float, object]:
    lr = np.ascontiguousarray(image.transpose(2, 0, 1))
    plan = plan_tiles(lr.shape[1], lr.shape[2], tile=tile, multiple=pad_multiple)
    padded = pad_image(lr, plan)
    start = time.perf_counter()
    grouped = plan_groups(padded, plan, default_thresholds(groups))
    return (time.perf_counter() - start) * 1e3 / len(plan.starts), grouped


def _markdown(data: dict) -> str:
    meta, rows = data["meta"], data["runs"]
    lines = [
        "# Patch-adaptive sampling vs uniform steps (InvSR, one adaptive bundle)",
        "",
        f"{meta['date']} on **{meta['device_name']}** ({meta['cpu_count']} cores, load average {meta['load_average']:.2f} "
        f"when the runs ended, theirs included), sr-export {meta['sr_export']}; {data['image']}; weights: {data['weights']}.",
        "",
        f"Tiles per group with `--steps auto` (default thresholds {data['thresholds']}): {data['groups']}. "
        f"Difficulty estimator: {data['estimator_ms_per_tile']:.2f} ms per tile.",
        "",
        "| steps | wall s (median of runs) | tile-steps run | vs uniform 5 |",
        "|---|---|---|---|",
    ]
    uniform5 = next(r for r in rows if r["steps"] == 5)["median_s"]
    lines += [f"| {r['steps']} | {r['median_s']:.1f} | {r['tile_steps']} | {uniform5 / r['median_s']:.2f}x |" for r in rows]
    lines += ["", "With random weights nothing here says whether `auto` keeps the quality of uniform 5 steps; run "
              "`scripts/adaptive_quality.py` with the real checkpoints on real images for that.", ""]
    return "\n".join(lines)


@click.command("adaptive")
@click.option("--size", type=int, default=256, show_default=True, help="LR side of the synthetic mixed image.")
@click.option("--tile", type=int, default=128, show_default=True)
@click.option("--batch", type=int, default=1, show_default=True, help="Tiles per engine call.")
@click.option("--runs", type=int, default=1, show_default=True, help="Timed runs per mode.")
@click.option("--report", "report_dir", type=click.Path(path_type=Path), default=Path("bench-report-adaptive"),
              show_default=True)
def adaptive_bench(size, tile, batch, runs, report_dir, **checkpoints) -> None:
    """Patch-adaptive sampling (--steps auto) against uniform 1, 3 and 5 steps: time and steps run."""
    from sr_runtime.pipeline import Upscaler

    from ...bench.bundles import cached_bundle
    from ...builders.bundle_builder import BuildOptions
    from . import InvSRExport
    from .schedule import step_groups

    def report(message: str) -> None:
        click.echo(message, err=True)

    family_bench = InvSRExport().bench(checkpoints, report)
    source = family_bench.source.with_groups(*step_groups("adaptive"))
    bundle = cached_bundle(source, BuildOptions(backend="onnxruntime-cpu", precision=Precision.FP32, tile=tile,
                                                batch=batch), f"invsr-adaptive-onnxruntime-cpu-fp32-t{tile}-b{batch}", report)
    upscaler = Upscaler.from_bundle(bundle)
    section = upscaler.manifest.section
    image = mixed_image(size)
    estimator_ms, grouped = _estimator_ms(image, tile, section.geometry.pad_multiple, len(section.groups))
    rows = []
    for mode in MODES:
        report(f"{size}x{size}, steps {mode}")
        timing = time_calls(lambda mode=mode: upscaler.upscale(image, steps=mode), lambda: None, runs, 0)
        tile_steps = (sum(section.group_steps[g] for g in grouped.groups) if mode == "auto"
                      else mode * len(grouped.groups))
        rows.append({"steps": mode, "samples_s": [ms / 1e3 for ms in timing.samples_ms],
                     "median_s": timing.median_ms / 1e3, "tile_steps": int(tile_steps)})
    data = {
        "meta": machine("cpu"), "image": f"{size}x{size} LR in quadrants (flat, noisy / textured, blurred), tile {tile}",
        "weights": family_bench.weights, "thresholds": list(default_thresholds(len(section.groups))),
        "groups": grouped.summary(section.group_steps), "estimator_ms_per_tile": estimator_ms, "runs": rows,
    }
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "report.json").write_text(json.dumps(data, indent=1))
    (report_dir / "report.md").write_text(_markdown(data))
    click.echo(str(report_dir / "report.md"))


adaptive_bench.params.extend(CHECKPOINTS)  # real checkpoints instead of random weights
