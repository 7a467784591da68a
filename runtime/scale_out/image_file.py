"""One image, file to file: the step that the single-process loop and every scale-out worker share, so
both refuse, read, upscale and write an image the same way and say why one failed in the same line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import SRError, os_error_line
from ..family import TileProgress
from ..images import OutputExists, read_image, remove_stale_temps, write_image
from ..resources import ImageCost, check_cost

Run = Callable[[np.ndarray, TileProgress | None], np.ndarray]  # (H,W,3) in [0,1], progress -> the SR image
Cost = Callable[[int, int], ImageCost]  # (height, width) -> its memory and tiles, before it starts


def check_replaceable(target: Path, replace: bool) -> None:
    """Refuses, before any work, to write ``target`` over an existing file unless ``replace``, and ever over
    what is not a plain file (a folder, a pipe, a device)."""
    if not (target.exists() or target.is_symlink()):
        return
    if not replace:
        raise OutputExists(f"{target} exists; pass --overwrite to replace it")
    if not target.is_symlink() and not target.is_file():
        raise SRError(f"{target} exists and is not a plain file; give another output")


def upscale_file(run: Run, cost: Cost, source: Path, target: Path, memory_limit: int,
                 on_tiles_done: TileProgress | None = None, replace: bool = False) -> tuple[int, int]:
    """Upscales ``source`` into ``target`` (written atomically; an existing one only if ``replace``) and returns
    the output's (width, height). An image whose estimated memory is above ``memory_limit`` is refused from its
    header, before it is read."""
    check_replaceable(target, replace)
    remove_stale_temps(target)
    loaded = read_image(source, lambda header: check_cost(header.width, header.height,
                                                          cost(header.height, header.width), memory_limit))
    result = run(loaded.pixels, on_tiles_done)
    write_image(target, result, bit_depth=loaded.bit_depth, replace=replace)
    return result.shape[1], result.shape[0]


def one_line(image: Path, err: BaseException) -> str:
    """The error as one line that names the image."""
    text = os_error_line(err) if isinstance(err, OSError) else " ".join(str(err).split()) or type(err).__name__
    return text if str(image) in text else f"{image}: {text}"


def failure_of(image: Path, work: Callable[[], object]) -> str | None:
    """Runs ``work`` on ``image``: None when it succeeded, else the one-line reason it failed (bad input,
    a file system error, memory); anything else is a bug and propagates."""
    try:
        work()
    except (SRError, OSError, ValueError) as err:
        return one_line(image, err)
    except MemoryError:
        return f"{image}: ran out of memory; lower --max-memory to refuse such images early"
    return None
