"""``sr-export upscale``'s file handling: where each output goes, never onto an input, and a batch
that goes on past a bad image, says what failed and why, and ends with a summary."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import click

from sr_runtime.errors import SRError
from sr_runtime.images import Inputs, image_size, read_image, write_image
from sr_runtime.resources import check_cost

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


def _reason(image: Path, err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if str(image) in text else f"{image}: {text}"


def _upscale_one(runner: ImageRunner, image: Path, target: Path, memory_limit: int) -> None:
    from tqdm import tqdm

    if size := image_size(image):
        width, height = size
        cost = runner.cost(height, width)
        check_cost(width, height, cost, memory_limit)
    loaded = read_image(image)
    height, width = loaded.pixels.shape[:2]
    with tqdm(desc=f"{image.name} {width}x{height}", unit="tile", leave=False, file=sys.stderr) as bar:

        def on_tiles_done(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        result = runner.run(loaded.pixels, on_tiles_done)
    write_image(target, result, bit_depth=loaded.bit_depth)
    click.echo(f"wrote {target} ({result.shape[1]}x{result.shape[0]})", err=True)


def upscale_files(runner: ImageRunner, found: Inputs, targets: list[Path], memory_limit: int) -> Summary:
    """Every image, whatever happens to the others; each failure is one line naming the file."""
    from tqdm import tqdm

    summary = Summary(skipped=list(found.skipped))
    for image, target in tqdm(list(zip(found.images, targets, strict=True)), desc="images", unit="img",
                              disable=len(found.images) < 2, file=sys.stderr):
        try:
            _upscale_one(runner, image, target, memory_limit)
            summary.done += 1
        except (SRError, OSError, ValueError) as err:
            summary.failed.append((image, _reason(image, err)))
        except MemoryError:
            summary.failed.append((image, f"{image}: ran out of memory; lower --max-memory to refuse such images early"))
        if summary.failed and summary.failed[-1][0] == image:
            click.echo(f"error: {summary.failed[-1][1]}", err=True)
    return summary


def finish(summary: Summary, images: int) -> None:
    """The summary of a batch, and a failing exit status when any image failed."""
    if images > 1 or summary.skipped:
        click.echo(summary.line(), err=True)
        for path in summary.skipped:
            log.info("skipped %s: not an image file", path)
    if summary.failed:
        sys.exit(1)
