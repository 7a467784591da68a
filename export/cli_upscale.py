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
from sr_runtime.bounded_parse import read_text
from sr_runtime.errors import SRError
from sr_runtime.family import TileProgress
from sr_runtime.images import Inputs, OutputFile
from sr_runtime.scale_out.image_file import check_replaceable, failure_of, upscale_file

from .cli_families import OptionGroup
from .cli_options import FiniteFloatRange
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


def _identity(path: Path) -> tuple[int, int] | None:
    """What the file system calls the file (through symbolic and hard links); None where there is none yet."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def plan_outputs(inputs: tuple[str, ...], found: Inputs, output: Path) -> list[Path]:
    """One input file -> OUTPUT is that file (by suffix); otherwise OUTPUT is a folder of <stem>.png.
    No output folder may be an input folder (what each file may be is ``check_written``'s)."""
    single_file = len(inputs) == 1 and Path(inputs[0]).is_file()
    if single_file and output.suffix.lower() in OUTPUT_SUFFIXES:
        return [output]
    if single_file and output.suffix and not output.is_dir():
        raise SRError(f"output {output} must end in .png or .npy (or be a folder)")
    if not single_file and output.suffix.lower() in OUTPUT_SUFFIXES and not output.is_dir():
        raise SRError(f"with several images the output is a folder, not the file {output}")
    if output.exists() and not output.is_dir():
        raise SRError(f"the output folder {output} is an existing file")
    if folder := next((Path(i) for i in inputs if Path(i).is_dir() and _same(Path(i), output)), None):
        raise SRError(f"the output folder {output} is the input folder {folder}: the results would overwrite or "
                      "mix with the images; give another folder")
    return [output / f"{image.stem}.png" for image in found.images]


def check_written(found: Inputs, targets: list[Path], paths: dict[str, Path], bundle: Path | None) -> None:
    """Every file the run writes (each image's output and its per-image files, such as InvSR's steps map) is
    refused before any work if it is an input (an image or a list file, also through links), a file of the
    bundle being run, or a file something else of this run writes too. Whether an existing file may be
    replaced is each image's own question (``--overwrite``)."""
    protected = {identity: path for path in [*found.images, *found.lists] if (identity := _identity(path))}
    bundle_folder = os.path.realpath(bundle) if bundle is not None else None
    folders: dict[Path, str] = {}  # each output folder's real path, resolved once
    writers: dict[str, str] = {}
    for flag, path in paths.items():
        if len(found.images) > 1 and STEM not in str(path):
            raise SRError(f"{flag_name(flag)} {path}: with several images put {STEM} in the path (e.g. maps/{STEM}.png)")
    for image, target in zip(found.images, targets, strict=True):
        written = [(target, f"the output of {image}"),
                   *((file, f"{flag_name(flag)} of {image}") for flag, file in image_options(paths, image).items())]
        for file, what in written:
            folder = folders.setdefault(file.parent, os.path.realpath(file.parent))
            where = os.path.join(folder, file.name)
            if (identity := _identity(file)) and (clash := protected.get(identity)):
                raise SRError(f"{file} ({what}) would overwrite the input {clash}; give another path")
            if bundle_folder is not None and os.path.commonpath([bundle_folder, folder]) == bundle_folder:
                raise SRError(f"{file} ({what}) is inside the bundle {bundle}; give another path")
            if (other := writers.setdefault(where, what)) != what:
                raise SRError(f"{other} and {what} would both be written to {file}; give another path")


def flag_name(option: str) -> str:
    return "--" + option.replace("_", "-")


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


def _for_image(path: Path, image: Path) -> Path:
    return Path(str(path).replace(STEM, image.stem))


def image_options(paths: dict[str, Path], image: Path) -> dict[str, Path]:
    """The per-image file options with ``{stem}`` made ``image``'s."""
    return {name: _for_image(path, image) for name, path in paths.items()}


def _upscale_one(runner: ImageRunner, image: Path, target: Path, memory_limit: int, overwrite: bool) -> None:
    from tqdm import tqdm

    paths = image_options(runner.paths, image)
    for path in paths.values():  # written by the family: checked before the work, like the output
        check_replaceable(path, overwrite)
    files = {name: OutputFile(path, overwrite) for name, path in paths.items()}

    def run(pixels: np.ndarray, _: TileProgress | None) -> np.ndarray:
        height, width = pixels.shape[:2]
        with tqdm(desc=f"{image.name} {width}x{height}", unit="tile", leave=False, file=sys.stderr) as bar:

            def on_tiles_done(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            return runner.run(pixels, on_tiles_done, files)

    width, height = upscale_file(run, runner.cost, image, target, memory_limit, replace=overwrite)
    tqdm.write(f"wrote {target} ({width}x{height})", file=sys.stderr)  # on a line of its own, not the bar's


def upscale_files(runner: ImageRunner, found: Inputs, targets: list[Path], memory_limit: int,
                  overwrite: bool) -> Summary:
    """Every image, whatever happens to the others; each failure is one line naming the file."""
    from tqdm import tqdm

    summary = Summary(skipped=list(found.skipped))
    for image, target in tqdm(list(zip(found.images, targets, strict=True)), desc="images", unit="img",
                              disable=len(found.images) < 2, file=sys.stderr):
        reason = failure_of(image, partial(_upscale_one, runner, image, target, memory_limit, overwrite))
        if reason is None:
            summary.done += 1
        else:
            summary.failed.append((image, reason))
            tqdm.write(f"error: {reason}", file=sys.stderr)
    return summary


def refuse_run_folders(targets: list[Path]) -> None:
    """A single-process run never writes into the output folder of a scale-out run: its record would not
    know those outputs, and the two runs could be writing at once."""
    from sr_runtime.scale_out.run_folder import RunFolder

    for folder in dict.fromkeys(target.parent for target in targets):
        if RunFolder(folder).is_run_folder():
            raise SRError(f"{folder} is the output folder of a --workers run; resume that run with the same command, "
                          "or give another folder")


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


def expand_list_files(inputs: tuple[str, ...]) -> tuple[tuple[str, ...], list[Path]]:
    """A list file (.txt or .list: one image file or folder per line, relative to the list's folder; blank
    lines and # comments skipped) stands for what it lists. Returns the inputs and the list files."""
    expanded: list[str] = []
    lists: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.suffix.lower() not in LIST_SUFFIXES or not path.is_file():
            expanded.append(item)
            continue
        lines = [line.strip() for line in read_text(path, "the list of images").splitlines()]
        listed = [str(path.parent / line) for line in lines if line and not line.startswith("#")]
        if not listed:
            raise SRError(f"{path}: the list names no images")
        expanded += listed
        lists.append(path)
    return tuple(expanded), lists


# ---- --workers N: the same files on Ray (sr_runtime.scale_out) -----------------------------------

SCALE_OUT = OptionGroup("ray", "Scale-out", "Scale-out options (with --workers N: Ray Data, resumable)", (
    click.Option(["--ray-address"], default=None, metavar="ADDR",
                 help="Join this Ray cluster instead of starting a local one (auto: the cluster of the node this "
                      "runs on); the bundle, inputs and output folder must be at the same paths on every node."),
    click.Option(["--cpus-per-worker"], type=click.IntRange(min=1), default=None,
                 help="CPUs Ray reserves per worker, also its ONNX Runtime threads (default: this machine's cores / "
                      "N for a local Ray, 1 on a cluster)."),
    click.Option(["--gpus-per-worker"], type=FiniteFloatRange(min=0), default=0.0, show_default=True,
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
    check_written(found, targets, paths, bundle)
    cores = os.cpu_count() or 1
    cpus = params["cpus_per_worker"] or (1 if params["ray_address"] else max(1, cores // workers))
    if not params["ray_address"] and workers * cpus > cores:  # a local Ray would start them all on these cores
        raise SRError(f"--workers {workers} with {cpus} CPU each needs {workers * cpus} CPUs, this machine has {cores}; "
                      "ask for fewer workers, or join a cluster with --ray-address")
    cluster = Cluster(workers, params["ray_address"], cpus, params["gpus_per_worker"])
    if verify:  # a damaged bundle is refused here, before Ray starts
        verify_bundle(bundle)
    # Absolute: the workers do not run in this folder, nor maybe on this machine. Workers on other nodes check
    # the bundle they see again; local ones would read the files just checked.
    settings = WorkerSettings(bundle.absolute(), verify and params["ray_address"] is not None, workers, cpus,
                              params["gpus_per_worker"], max_memory, runtime.cuda_graph)
    # Per-image files are never replaced by a worker: the run folder's record decides, before any starts, which
    # existing ones are this run's own to remove.
    tasks = [ImageTask(image.absolute(), target.absolute(),
                       {**run, **{name: OutputFile(path.absolute()) for name, path in image_options(paths, image).items()}})
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
