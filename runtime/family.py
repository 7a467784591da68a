"""What a model family contributes to the runtime, chosen by the manifest's ``pipeline.family``.

The backends run any chain of engine calls (``ChainPlan``); a family says which graphs it has, which
calls it makes, with which constants, and how an image becomes tile batches and back. A family lives
in its own folder under ``sr_runtime.families`` and subclasses ``Family``:

- ``name`` (the manifest's ``pipeline.family``), ``title``, ``scale``, ``section_type`` (its typed manifest section: the
  constants the export side recorded), ``options_type`` (its per-image options: the keywords of
  ``Upscaler.upscale``), ``graphs`` (each graph's ``GraphIO``), ``default_chain`` (the ``ChainId`` that
  ``Upscaler.run_tiles`` runs unless told another; ``TILES`` for a family with one chain) and ``feeds`` (its host
  buffers per tile batch, its main feed first, in the order ``Upscaler.run_tiles`` takes them);
- ``__init__``: load the bundle's extra files (the graphs' I/O is checked here);
- ``plan(chain, batch, height, width)``: the engine calls of one tile batch of ``chain``, one of the family's chains
  over the same engines (by ``chain.name``: InvSR's step groups, S3Diff's and OSEDiff's stages and VAE segments;
  ``TILES`` for the others); a chain it does not have is refused in one line (``no_chain``);
- ``upscale(image, chain, options, on_tiles_done)``: the image-level loop (padding, tiles, stitching);
- ``cost(height, width, options)``: its memory and tiles for an image, before it starts;
- ``describe()``: its lines of ``sr-export inspect``;

then it is listed in ``sr_runtime.families.FAMILIES``.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .backends.base import REBUILD_HINT, TILES, ChainId, ChainPlan, TileChain
from .errors import SRError
from .graph_io import GraphIO
from .manifest import Manifest
from .resources import ImageCost

# (tiles done, total tiles) after each tile batch, for progress bars.
TileProgress = Callable[[int, int], None]


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """A family whose images need no per-image options."""


class Family(ABC):
    name: ClassVar[str]
    title: ClassVar[str]
    scale: ClassVar[int]
    section_type: ClassVar[type]
    options_type: ClassVar[type] = NoOptions
    graphs: ClassVar[tuple[GraphIO, ...]]
    default_chain: ClassVar[ChainId] = TILES
    feeds: ClassVar[tuple[str, ...]]  # the default chain's, its main feed first
    files: ClassVar[tuple[str, ...]] = ()  # other bundle files it reads: each must be in the manifest (hashed)

    def __init__(self, bundle: Path, manifest: Manifest):
        self.bundle = Path(bundle)
        self.manifest = manifest
        self.section = manifest.section
        if manifest.pipeline.scale != self.scale:
            raise SRError(f"the bundle is a x{manifest.pipeline.scale} {self.title}; this runtime runs x{self.scale}")
        check_graph_io(manifest, self.graphs)
        recorded = {record.file for record in manifest.files}
        if missing := [name for name in self.files if name not in recorded]:
            raise SRError(f"the bundle's manifest does not record {', '.join(missing)}; {REBUILD_HINT}")

    def options(self, **given: Any) -> Any:
        """The typed per-image options; an option this family does not have, or this bundle cannot run, is
        refused, never ignored."""
        known = [f.name for f in dataclasses.fields(self.options_type)]
        if unknown := sorted(set(given) - set(known)):
            takes = f"it takes {', '.join(known)}" if known else "it takes none"
            raise SRError(f"a {self.name} bundle has no option {', '.join(unknown)}; {takes}")
        options = self.options_type(**given)
        self.check_options(options)
        return options

    def check_options(self, options: Any) -> None:  # noqa: B027 (optional hook)
        """Refuses options this bundle cannot run (beyond their types, which the options record checks)."""

    @property
    def tile_shape(self) -> tuple[int, int]:
        """The (height, width) of a full tile."""
        tile = self.manifest.pipeline.tile
        return tile, tile

    def check_single_chain(self, chain: ChainId) -> None:
        """Refuses any chain but ``TILES``, for a family whose engines form that one chain."""
        if chain != TILES:
            raise no_chain(self.title, chain, f"one, {TILES}")

    @abstractmethod
    def plan(self, chain: ChainId, batch: int, height: int, width: int) -> ChainPlan:
        """The engine calls of one batch of ``batch`` tiles of ``chain``, its main feed ``height`` x ``width`` px."""

    @abstractmethod
    def upscale(self, image: np.ndarray, chain: TileChain, options: Any, on_tiles_done: TileProgress | None) -> np.ndarray:
        """``image`` (H,W,3) float32 in [0,1] -> (scale*H, scale*W, 3) float32 in [0,1]."""

    @abstractmethod
    def cost(self, height: int, width: int, options: Any) -> ImageCost:
        """What upscaling a ``height`` x ``width`` image costs (``sr_runtime.resources``), before it starts."""

    @abstractmethod
    def describe(self) -> list[str]:
        """``sr-export inspect`` lines: the family's constants, as ``"label  value"``."""


def no_chain(title: str, chain: ChainId, chains: str) -> SRError:
    """The refusal of a chain a family does not have; ``chains``: those it has, in words."""
    return SRError(f"the {title} bundle has no chain {chain} (main feed {chain.main_feed!r}); it has {chains}")


def check_graph_io(manifest: Manifest, graphs: tuple[GraphIO, ...]) -> None:
    """Refuses a bundle that lacks a graph the family runs, or whose graph names other tensors."""
    for io in graphs:
        graph = manifest.graphs.get(io.name)
        if graph is None:
            raise SRError(f"the bundle has no {io.name} graph; {REBUILD_HINT}")
        have = [(t.name, list(t.shape)) for t in (*graph.inputs, *graph.outputs)]
        want = [(t.name, list(t.dims)) for t in io.tensors]
        if have != want:
            raise SRError(
                f"graph {io.name} has tensors {have}, the runtime binds {want}; {REBUILD_HINT}"
            )
