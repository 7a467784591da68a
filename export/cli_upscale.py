"""``sr-export upscale``'s file handling: where each output goes, never onto an input, and a batch
that goes on past a bad image, says what failed and why, and ends with a summary."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import click
import numpy as np

from sr_runtime.backends.base import RuntimeOptions
from sr_runtime.errors import SRError
from sr_runtime.family import TileProgress
from sr_runtime.images import Inputs
from sr_runtime.scale_out.image_file import failure_of, upscale_file

from .cli_families import OptionGroup
from .families.base import ImageRunner

OUTPUT_SUFFIXES = (".png", ".npy")
log = logging.getLogger(__name__)


def _same(a: Path, b: Path) -> bool:
    """Whether two paths are one file or folder: through symbolic and hard links, and on case-insensitive
    file systems (the operating system decides)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return False


def plan_outputs(inputs: tuple[str, ...], found: Inputs, output: Path) -> list[Path]:
    """One input file -> OUTPUT is that file (by suffix); otherwise OUTPUT is a folder of <stem>.png.
    No output may be an input, and no output folder an input folder."""
    single_file = len(inputs) == 1 and Path(inputs[0]).is_file()
    if single_file and output.suffix.lower() in OUTPUT_SUFFIXES:
        targets = [output]
    elif single_file and output.suffix and not output.is_dir():
        raise SRError(f"output {output} must end in .png or .npy (or be a folder)")
    else:
        if folder := next((Path(i) for i in inputs if Path(i).is_dir() and _same(Path(i), output)), None):
            raise SRError(f"the output folder {output} is the input folder {folder}: the results would overwrite or "
                          "mix with the images; give another folder")
        targets = [output / f"{image.stem}.png" for image in found.images]
    seen: dict[Path, Path] = {}
    for image, target in zip(found.images, targets, strict=True):
        if target in seen:
            raise SRError(f"{seen[target].name} and {image.name} would both be written to {target}")
        seen[target] = image
        if clash := next((i for i in found.images if _same(target, i)), None):
            raise SRError(f"{target} would overwrite the input {clash}; give another output")
    return targets


@dataclass
class Summary:
    done: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)

    def line(self) -> str:
        return f"{self.done} done, {len(self.failed)} failed, {len(self.skipped)} skipped (not images)"


STEM = "{stem}"


def path_options(run: dict[str, Any]) -> dict[str, Path]:
    """The family options that name a file written per image."""
    return {name: value for name, value in run.items() if isinstance(value, Path)}


def image_paths(paths: dict[str, Path], found: Inputs) -> None:
    """Refuses per-image output options that several images would overwrite, or that name an input."""
    for name, path in paths.items():
        flag = "--" + name.replace("_", "-")
        if len(found.images) > 1 and STEM not in str(path):
            raise SRError(f"{flag} {path}: with several images put {STEM} in the path (e.g. maps/{STEM}.png)")
        for image in found.images:
            if _same(_for_image(path, image), image):
                raise SRError(f"{flag} {path} would overwrite the input {image}")


def _for_image(path: Path, image: Path) -> Path:
    return Path(str(path).replace(STEM, image.stem))


def image_options(paths: dict[str, Path], image: Path) -> dict[str, Path]:
    """The per-image file options with ``{stem}`` made ``image``'s."""
    return {name: _for_image(path, image) for name, path in paths.items()}


def _upscale_one(runner: ImageRunner, image: Path, target: Path, memory_limit: int) -> None:
    from tqdm import tqdm

    def run(pixels: np.ndarray, _: TileProgress | None) -> np.ndarray:
        height, width = pixels.shape[:2]
        with tqdm(desc=f"{image.name} {width}x{height}", unit="tile", leave=False, file=sys.stderr) as bar:

            def on_tiles_done(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            return runner.run(pixels, on_tiles_done, image_options(runner.paths, image))

    width, height = upscale_file(run, runner.cost, image, target, memory_limit)
    click.echo(f"wrote {target} ({width}x{height})", err=True)


def upscale_files(runner: ImageRunner, found: Inputs, targets: list[Path], memory_limit: int) -> Summary:
    """Every image, whatever happens to the others; each failure is one line naming the file."""
    from tqdm import tqdm

    image_paths(runner.paths, found)
    summary = Summary(skipped=list(found.skipped))
    for image, target in tqdm(list(zip(found.images, targets, strict=True)), desc="images", unit="img",
                              disable=len(found.images) < 2, file=sys.stderr):
        reason = failure_of(image, partial(_upscale_one, runner, image, target, memory_limit))
        if reason is None:
            summary.done += 1
        else:
            summary.failed.append((image, reason))
            click.echo(f"error: {reason}", err=True)
    return summary


def finish(summary: Summary, images: int) -> None:
    """The summary of a batch, and a failing exit status when any image failed."""
    if images > 1 or summary.skipped:
        click.echo(summary.line(), err=True)
        for path in summary.skipped:
            log.info("skipped %s: not an image file", path)
    if summary.failed:
        sys.exit(1)


# ---- list files ----------------------------------------------------------------------------------

LIST_SUFFIXES = (".txt", ".list")


def expand_list_files(inputs: tuple[str, ...]) -> tuple[str, ...]:
    """A list file (.txt or .list: one image file or folder per line, relative to the list's folder; blank
    lines and # comments skipped) stands for what it lists."""
    expanded: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.suffix.lower() not in LIST_SUFFIXES or not path.is_file():
            expanded.append(item)
            continue
        try:
            lines = [line.strip() for line in path.read_text().splitlines()]
        except (OSError, UnicodeDecodeError) as err:
            raise SRError(f"{path}: cannot be read as a list of images ({err})") from None
        listed = [str(path.parent / line) for line in lines if line and not line.startswith("#")]
        if not listed:
            raise SRError(f"{path}: the list names no images")
        expanded += listed
    return tuple(expanded)


# ---- --workers N: the same files on Ray (sr_runtime.scale_out) -----------------------------------

SCALE_OUT = OptionGroup("ray", "Scale-out", "Scale-out options (with --workers N: Ray Data, resumable)", (
    click.Option(["--ray-address"], default=None, metavar="ADDR",
                 help="Join this Ray cluster instead of starting a local one (auto: the cluster of the node this "
                      "runs on); the bundle, inputs and output folder must be at the same paths on every node."),
    click.Option(["--cpus-per-worker"], type=click.IntRange(min=1), default=None,
                 help="CPUs Ray reserves per worker, also its ONNX Runtime threads (default: this machine's cores / "
                      "N for a local Ray, 1 on a cluster)."),
    click.Option(["--gpus-per-worker"], type=click.FloatRange(min=0), default=0.0, show_default=True,
                 help="GPUs Ray reserves per worker, for GPU bundles (a fraction shares a GPU)."),
    click.Option(["--redo"], is_flag=True,
                 help="Upscale every image again, replacing this run's outputs in the folder, even when an earlier "
                      "run used another bundle or options (without it, such a folder is refused)."),
))


def scale_out(ctx: click.Context, workers: int, found: Inputs, targets: list[Path], output: Path, bundle: Path,
              run: dict[str, Any], max_memory: float | None, runtime: RuntimeOptions, verify: bool) -> None:
    """Upscales on Ray: every finished output of an earlier run with this bundle and these options is kept;
    ends with the report and a failing exit status when any image failed."""
    from sr_runtime.bundle_check import verify_bundle
    from sr_runtime.scale_out.driver import upscale_on_ray
    from sr_runtime.scale_out.ray_job import Cluster, ImageTask
    from sr_runtime.scale_out.run_folder import SUMMARY_NAME
    from sr_runtime.scale_out.worker import WorkerSettings

    if any(target.parent != output for target in targets):
        raise SRError(f"--workers writes into a folder: give -o DIR, not the file {output}")
    params = ctx.params
    paths = path_options(run)
    image_paths(paths, found)
    cpus = params["cpus_per_worker"] or (1 if params["ray_address"] else max(1, (os.cpu_count() or 1) // workers))
    cluster = Cluster(workers, params["ray_address"], cpus, params["gpus_per_worker"])
    if verify:  # a damaged bundle is refused here, before Ray starts
        verify_bundle(bundle)
    # Absolute: the workers do not run in this folder, nor maybe on this machine. Workers on other nodes check
    # the bundle they see again; local ones would read the files just checked.
    settings = WorkerSettings(bundle.absolute(), verify and params["ray_address"] is not None, workers, cpus,
                              params["gpus_per_worker"], max_memory, runtime.cuda_graph)
    tasks = [ImageTask(image.absolute(), target.absolute(),
                       {**run, **{name: path.absolute() for name, path in image_options(paths, image).items()}})
             for image, target in zip(found.images, targets, strict=True)]
    click.echo(f"on Ray ({params['ray_address'] or 'local'}): {workers} workers, each with {cpus} CPU and "
               f"{params['gpus_per_worker']:g} GPU", err=True)
    summary = upscale_on_ray(tasks, found.skipped, output.absolute(), bundle.absolute(), run, cluster, settings,
                             params["redo"], lambda line: click.echo(line, err=True))
    for line in summary.lines():
        click.echo(line, err=True)
    click.echo(f"summary: {output / SUMMARY_NAME}", err=True)
    if summary.failed:
        sys.exit(1)
