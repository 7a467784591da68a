"""What a model family contributes to the runtime, chosen by the manifest's ``pipeline.family``.

The backends run any chain of engine calls (``ChainPlan``); a family says which calls, with which
constants, and how an image becomes tile batches and back. To add one, subclass ``Family``:

- ``name`` (the manifest's ``pipeline.family``) and ``feeds`` (host buffers per tile batch, in the
  order ``Upscaler.run_tiles`` takes them);
- ``__init__``: refuse a bundle this chain cannot run (pipeline constants, graph I/O through
  ``check_graph_io``) and load the bundle's extra files;
- ``plan(batch)``: the engine calls of one tile batch;
- ``upscale(image, chain, ...)``: the image-level loop (padding, tiles, stitching);

and register it in ``pipeline.FAMILIES``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import ClassVar

import numpy as np

from .backends.base import REBUILD_HINT, Call, ChainPlan, TileChain
from .errors import SRError
from .manifest import Manifest


class Family(ABC):
    name: ClassVar[str]
    feeds: ClassVar[tuple[str, ...]]

    def __init__(self, bundle: Path, manifest: Manifest):
        self.bundle = Path(bundle)
        self.manifest = manifest

    @abstractmethod
    def plan(self, batch: int) -> ChainPlan:
        """The engine calls of one batch of ``batch`` tiles, with the bundle's constants."""

    @abstractmethod
    def upscale(
        self,
        image: np.ndarray,
        chain: TileChain,
        color_fix: str | None = None,
        seed: int | None = None,
        on_tiles_done: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """``image`` (H,W,3) float32 in [0,1] -> (scale*H, scale*W, 3) float32 in [0,1]."""


def check_graph_io(manifest: Manifest, calls: Iterable[Call]) -> None:
    """Refuses a bundle whose graphs lack one the chain calls, or name other inputs / outputs."""
    for call in calls:
        graph = manifest.graphs.get(call.graph)
        if graph is None:
            raise SRError(f"the bundle has no {call.graph} graph; {REBUILD_HINT}")
        have = ({t.name for t in graph.inputs}, {t.name for t in graph.outputs})
        want = (set(call.inputs), set(call.outputs))
        if have != want:
            raise SRError(
                f"graph {call.graph} has inputs {sorted(have[0])} and outputs {sorted(have[1])}, the runtime binds "
                f"{sorted(want[0])} and {sorted(want[1])}; {REBUILD_HINT}"
            )
