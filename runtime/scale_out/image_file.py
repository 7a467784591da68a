"""One image, file to file: the step that the single-process loop and every scale-out worker share, so
both refuse, read, upscale and write an image the same way and say why one failed in the same line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import SRError
from ..family import TileProgress
from ..images import image_size, read_image, write_image
from ..resources import ImageCost, check_cost

Run = Callable[[np.ndarray, TileProgress | None], np.ndarray]  # (H,W,3) in [0,1], progress -> the SR image
Cost = Callable[[int, int], ImageCost]  # (height, width) -> its memory and tiles, before it starts


def upscale_file(run: Run, cost: Cost, source: Path, target: Path, memory_limit: int,
                 on_tiles_done: TileProgress | None = None) -> tuple[int, int]:
    """Upscales ``source`` into ``target`` (written atomically) and returns the output's (width, height).
    An image whose estimated memory is above ``memory_limit`` is refused from its header, before it is read."""
    if size := image_size(source):
        width, height = size
        check_cost(width, height, cost(height, width), memory_limit)
    loaded = read_image(source)
    result = run(loaded.pixels, on_tiles_done)
    write_image(target, result, bit_depth=loaded.bit_depth)
    return result.shape[1], result.shape[0]


def one_line(image: Path, err: BaseException) -> str:
    """The error as one line that names the image."""
    text = " ".join(str(err).split()) or type(err).__name__
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
