"""Scale-out throughput: images/s of ``sr-export upscale --workers N`` (N = 1, 2, a local Ray) against one
process without Ray, on the InvSR demo bundle and a full-size RRDBNet bundle (random weights: latency does
not depend on weight values). Writes report.md and report.json.

    python benchmarks/scale_out.py [--images 16] [--size 128] [--report benchmarks/reports/scale-out-cpu]

Bundles are built once into --bundles (default: $SR_EXPORT_CACHE/scale-out-bundles) and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from sr_runtime.cpu_target import cpu_name
from sr_runtime.images import write_image
from sr_runtime.manifest import MANIFEST_NAME
from sr_runtime.resources import memory_limit
from sr_runtime.scale_out.image_file import upscale_file
from sr_runtime.scale_out.run_folder import SUMMARY_NAME

SR_EXPORT = [sys.executable, "-c", "from sr_export.cli import main; main()"]
WORKERS = (1, 2)


def _invsr_demo(folder: Path) -> Path:
    subprocess.run([*SR_EXPORT, "build", "--steps", "1", "--backend", "onnxruntime-cpu", "-o", str(folder)], check=True)
    return folder


def _rrdbnet_full(folder: Path) -> Path:
    """The official x4 RRDBNet (16.7 M parameters), seeded random weights, as the Table 7 harness builds it."""
    import torch

    from sr_export.builders.bundle_builder import BuildOptions, build_bundle
    from sr_export.families.rrdbnet.layouts import REALESRGAN
    from sr_export.families.rrdbnet.model import OFFICIAL_CONFIG, RRDBNet
    from sr_export.families.rrdbnet.source import RRDBNetSource
    from sr_runtime.manifest import CheckpointRecord

    torch.manual_seed(0)
    source = RRDBNetSource(REALESRGAN, RRDBNet(OFFICIAL_CONFIG).eval(), demo=False,
                           checkpoints={REALESRGAN: CheckpointRecord("random weights", {"seed": "0"})})
    return build_bundle(source, BuildOptions(backend="onnxruntime-cpu", tile=128, output=folder), report=print)


BUNDLES = {"invsr-demo-s1": _invsr_demo, "realesrgan-full-random": _rrdbnet_full}


def _bundle(root: Path, name: str) -> Path:
    folder = root / name
    return folder if (folder / MANIFEST_NAME).exists() else BUNDLES[name](folder)


def _images(folder: Path, count: int, size: int) -> Path:
    rng = np.random.default_rng(0)
    for i in range(count):
        write_image(folder / f"img{i:03d}.png", rng.random((size, size, 3), dtype=np.float32))
    return folder


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def one_process(bundle: Path, images: Path, out: Path) -> dict:
    """The single-process path's per-image step in a loop, ONNX Runtime choosing its threads (all cores)."""
    from sr_runtime.pipeline import Upscaler

    load = _load()
    upscaler = Upscaler.from_bundle(bundle)
    limit = memory_limit(None)
    sources = sorted(images.glob("*.png"))
    start = time.perf_counter()
    for source in sources:
        upscale_file(upscaler.upscale, upscaler.cost, source, out / source.name, limit)
    seconds = time.perf_counter() - start
    return {"config": "one process, no Ray", "workers": 0, "images": len(sources), "seconds": round(seconds, 2),
            "images_per_second": round(len(sources) / seconds, 4), "steady_images_per_second": None,
            "command_seconds": None, "load_before": load, "load_after": _load()}


def on_ray(bundle: Path, images: Path, out: Path, workers: int) -> dict:
    """``sr-export upscale --workers N`` as a user runs it; its summary file has the run's and each worker's figures."""
    load = _load()
    start = time.perf_counter()
    subprocess.run([*SR_EXPORT, "upscale", str(images), "-o", str(out), "-e", str(bundle), "--workers", str(workers)],
                   check=True)
    command = time.perf_counter() - start
    summary = json.loads((out / SUMMARY_NAME).read_text())
    tried = summary["done"] + len(summary["failed"])
    # Steady state: each worker's images over its busy time (no Ray start, no bundle opening), added up.
    steady = sum(w["images"] / w["busy_seconds"] for w in summary["workers"] if w["busy_seconds"] > 0)
    return {"config": f"--workers {workers}", "workers": workers, "images": tried, "seconds": summary["seconds"],
            "images_per_second": summary["images_per_second"], "steady_images_per_second": round(steady, 4),
            "command_seconds": round(command, 2), "per_worker": summary["workers"], "load_before": load,
            "load_after": _load()}


def _markdown(report: dict) -> str:
    lines = [
        "# Scale-out throughput (`sr-export upscale --workers N`, local Ray)", "",
        f"{report['machine']}, {report['cores']} cores; Ray {report['ray']}, ONNX Runtime {report['onnxruntime']}; "
        f"{report['images']} images of {report['size']}x{report['size']} px -> x4, one run per row.", "",
        "- **images/s**: images over the run's wall time from the pipeline's start (workers starting and opening "
        "the bundle included, Ray's own start not); one process: the image loop only.",
        "- **steady**: each worker's images over its busy time, added up (what a long run approaches).",
        "- **command**: the whole command, Ray's start and shutdown included.",
        "- **load**: the 1-minute load average before and after the row (other jobs shared the 2 cores).", "",
        "| bundle | config | images/s | steady | run s | command s | load before -> after | per worker (images, s busy) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    busiest = max(max(row["load_before"][0], row["load_after"][0]) for rows in report["results"].values() for row in rows)
    if busiest > report["cores"] / 2:
        lines[2:2] = [f"**Measured while other jobs loaded the machine (1-minute load up to {busiest:g} on "
                      f"{report['cores']} cores).** Under contention more processes get a larger share of the cores, so "
                      "the gain from more workers here overstates what they bring on an idle machine, where workers "
                      "on one machine share the same cores as one process's threads; rerun on an idle machine.", ""]
    for bundle, rows in report["results"].items():
        for row in rows:
            workers = ", ".join(f"{w['images']} / {w['busy_seconds']:.1f}" for w in row.get("per_worker", []))
            lines.append(f"| {bundle} | {row['config']} | {row['images_per_second']:.3g} | "
                         f"{row['steady_images_per_second'] or '-'} | {row['seconds']:.1f} | {row['command_seconds'] or '-'} "
                         f"| {row['load_before'][0]} -> {row['load_after'][0]} | {workers or '-'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    import onnxruntime
    import ray

    from sr_export.cache import cache_root

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--size", type=int, default=128, help="LR side in px")
    parser.add_argument("--bundles", type=Path, default=cache_root() / "scale-out-bundles")
    parser.add_argument("--only", nargs="*", choices=list(BUNDLES), default=list(BUNDLES))
    parser.add_argument("--report", type=Path, default=Path("benchmarks/reports/scale-out-cpu"))
    args = parser.parse_args()

    work = args.report / "work"
    shutil.rmtree(work, ignore_errors=True)
    images = _images(work / "in", args.images, args.size)
    report = {"machine": cpu_name(), "cores": os.cpu_count(), "ray": ray.__version__,
              "onnxruntime": onnxruntime.__version__, "images": args.images, "size": args.size, "results": {}}
    for name in args.only:
        bundle = _bundle(args.bundles, name)
        rows = [one_process(bundle, images, work / f"{name}-one")]
        rows += [on_ray(bundle, images, work / f"{name}-w{n}", n) for n in WORKERS]
        report["results"][name] = rows
        print(json.dumps(rows, indent=1), flush=True)
    shutil.rmtree(work)
    args.report.mkdir(parents=True, exist_ok=True)
    (args.report / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.report / "report.md").write_text(_markdown(report))
    print(args.report / "report.md")


if __name__ == "__main__":
    main()
