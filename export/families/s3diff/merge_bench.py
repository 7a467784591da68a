"""``sr-export bench s3diff-merge``: what merging S3Diff's LoRA statically would cost in accuracy, against what keeping
the modulation live costs in time.

Accuracy: the pipeline with the modulation frozen at one degradation (what a merged network computes) against
the live pipeline, for images whose degradation scores differ. Time: the exported UNet graph (CFG batch 2, a
128 -> 512 image's 64 x 64 latent) with the live LoRA branches against the merged graph, on ONNX Runtime CPU."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import click
import numpy as np

from ...bench.measure import machine, time_calls
from .options import CHECKPOINTS

SCORES = ((0.1, 0.1), (0.1, 0.9), (0.5, 0.5), (0.9, 0.1), (0.9, 0.9))
MERGED_AT = (0.5, 0.5)
SIZE = 128  # LR px: Table 7's image


class _FixedDegradation:
    """The reference's stages with the degradation estimate replaced by given scores."""

    def __init__(self, reference, scores: tuple[float, float]):
        from .reference import S3DiffReference

        self.reference = reference
        self.scores = np.array([scores], np.float32)
        self.whole = S3DiffReference.whole.__get__(self)  # its stages, with this degrade

    def __getattr__(self, name: str):
        return getattr(self.reference, name)

    def degrade(self, lr: np.ndarray) -> np.ndarray:
        return self.scores


def _image(size: int) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    base = np.stack([0.5 + 0.35 * np.sin(x / (5 + c) + c) * np.cos(y / 7 - c) for c in range(3)], axis=-1)
    noise = 0.04 * np.random.default_rng(0).standard_normal(base.shape)
    return np.clip(base + noise, 0, 1).astype(np.float32)


def _graph_ms(spec, components, dims, runs: int, folder: Path) -> float:
    import onnxruntime as ort

    from sr_runtime.precision import Precision

    from ...onnx_export import export_graph

    path = export_graph(spec, components, Precision.FP32, folder / f"{spec.name}.onnx", dims)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {t.name: v.numpy() for t, v in zip(spec.inputs, spec.sample_inputs(dims, Precision.FP32), strict=True)}
    return time_calls(lambda: session.run(None, feed), lambda: None, runs, 1).median_ms


def _markdown(data: dict) -> str:
    meta = data["meta"]
    lines = [
        "# S3Diff: a static LoRA merge against the live modulation",
        "",
        f"{meta['date']} on **{meta['device_name']}** ({meta['cpu_count']} cores, load average {meta['load_average']:.2f} "
        f"at the start), sr-export {meta['sr_export']}; weights: {data['weights']}.",
        "",
        f"## Accuracy: merged at deg_score {data['merged_at']} vs live ({SIZE} -> {4 * SIZE}, no colour fix)",
        "",
        "| image's deg_score (blur, noise) | PSNR merged vs live, dB |",
        "|---|---|",
        *(f"| {r['scores']} | {r['psnr']:.2f} |" for r in data["accuracy"]),
        "",
        f"The merged UNet reproduces the live one at its own degradation to max-abs {data['merge_max_abs']:.2g} "
        "(the folding is exact up to rounding).",
        "",
        "## Time: the UNet graph (CFG batch 2, 64 x 64 latent), ONNX Runtime CPU fp32, median ms",
        "",
        "| live modulation | merged | live / merged |",
        "|---|---|---|",
        f"| {data['live_ms']:.1f} | {data['merged_ms']:.1f} | {data['live_ms'] / data['merged_ms']:.3f}x |",
        "",
    ]
    return "\n".join(lines)


@click.command("s3diff-merge")
@click.option("--size", "model_size", type=click.Choice(["tiny", "full"]), default="tiny", show_default=True,
              help="Random weights: the tiny demo model or full-size SD-Turbo widths (checkpoint options: real ones).")
@click.option("--runs", type=int, default=3, show_default=True, help="Timed runs per graph.")
@click.option("--report", "report_dir", type=click.Path(path_type=Path), default=Path("bench-report-s3diff-merge"),
              show_default=True)
def merge_bench(model_size, runs, report_dir, **checkpoints) -> None:
    """S3Diff: a static LoRA merge's accuracy against the live modulation's time."""
    import torch

    from sr_runtime.families.s3diff.graphs import dims
    from sr_runtime.families.s3diff.options import S3DiffOptions
    from sr_runtime.precision import Precision

    from ...metrics import psnr
    from .bench import full_random_checkpoints
    from .graphs import UNET
    from .merge import MergedUNetStage, merged_graph_spec
    from .reference import S3DiffReference
    from .source import demo_checkpoints, load_source, resolve_source

    def report(message: str) -> None:
        click.echo(message, err=True)

    meta = machine("cpu")  # the load average when the run starts
    if any(checkpoints.values()):
        source, weights = resolve_source(**checkpoints, allow_demo=False, report=report), "checkpoints"
    else:
        paths = full_random_checkpoints(report) if model_size == "full" else demo_checkpoints()
        source, weights = load_source(paths, True, report), f"random ({model_size})"
    components = source.components
    reference = S3DiffReference(components)
    image, options = _image(SIZE), S3DiffOptions(color_fix="none")
    frozen = _FixedDegradation(reference, MERGED_AT)
    merged_out = _run(frozen, reference, image, options)  # what the network merged at MERGED_AT computes
    accuracy = []
    for scores in SCORES:
        report(f"deg_score {scores}")
        live = _run(_FixedDegradation(reference, scores), reference, image, options)
        accuracy.append({"scores": list(scores), "psnr": psnr(live, merged_out, peak=1.0)})
    deg = torch.tensor([MERGED_AT])
    merged_stage = MergedUNetStage(reference.unet, deg)
    sample = torch.randn(1, components.latent_channels, SIZE // 2, SIZE // 2)
    with torch.inference_mode():
        max_abs = float((merged_stage(sample, reference.prompt_embeds) - reference.unet(sample, deg,
                                                                                        reference.prompt_embeds)).abs().max())
    graph_dims = dims(1, SIZE, SIZE, reference.section, reference.prompt_embeds.shape)
    with tempfile.TemporaryDirectory() as folder:
        live_ms = _graph_ms(UNET, components, graph_dims, runs, Path(folder))
        merged_ms = _graph_ms(merged_graph_spec(deg), components, graph_dims, runs, Path(folder))
    data = {"meta": meta, "weights": weights, "merged_at": list(MERGED_AT), "accuracy": accuracy,
            "merge_max_abs": max_abs, "live_ms": live_ms, "merged_ms": merged_ms, "precision": Precision.FP32.value}
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "report.json").write_text(json.dumps(data, indent=1))
    (report_dir / "report.md").write_text(_markdown(data))
    click.echo(str(report_dir / "report.md"))


def _run(stages, reference, image: np.ndarray, options) -> np.ndarray:
    from sr_runtime.families.s3diff.image_loop import upscale_image

    return upscale_image(image, stages, reference.section, options, reference.batch)


merge_bench.params.extend(CHECKPOINTS)  # real checkpoints instead of random weights
