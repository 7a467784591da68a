"""What a model family contributes to the export side, behind one interface.

A family lives in its own folder (``sr_export.families.<name>``, next to ``sr_runtime.families.<name>``
on the runtime side) and is listed once in ``sr_export.families.FAMILIES``. Its ``ExportFamily``
plug-in gives:

- ``name`` (the runtime family, written to the manifest), ``title`` (for help and messages) and
  ``models`` (the ``--model`` values it answers to: one per checkpoint layout);
- its command-line options per command, as click options (``build_options``, ``reference_options``
  for ``upscale --backend torch``, ``run_options`` for every ``upscale`` (derived: one per field of the runtime
  family's ``options_type``, in the click form of ``cli_options`` or the family's ``image_options``), ``compare_options``,
  ``bench_options``): the CLI adds them, lists them under the family's title and refuses them for
  other families;
- ``source()``: the weights a build exports (real checkpoints or the seeded demo model), as a
  ``FamilySource`` whose ``plan_build()`` lists the graphs, the manifest section and extra files;
- ``reference()`` (the PyTorch reference on whole images), ``reference_source()`` (what
  ``sr-export compare`` rebuilds its fp32 reference from) and ``bench()`` (its Table 7 rows).

Heavy libraries (torch, diffusers) are imported inside these methods: the CLI imports every plug-in.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import click
import numpy as np

from sr_runtime.errors import SRError
from sr_runtime.family import TileProgress
from sr_runtime.graph_io import Dims
from sr_runtime.manifest import CheckpointRecord, Manifest, PipelineInfo
from sr_runtime.resources import ImageCost

from .. import cli_options as shared
from ..reporting import Report

if TYPE_CHECKING:  # the CLI imports every plug-in: no torch at import time
    from ..builders.backends import EngineBackend
    from ..graph_spec import GraphSpec

Options = Mapping[str, Any]  # option name (click's parameter name) -> value
DEFAULT_TILE = 128  # LR px: Table 7's 128 -> 512 image in one tile


@dataclass(frozen=True)
class ImageRunner:
    """How the CLI upscales one image, with a bundle or a PyTorch reference."""

    # (H,W,3) in [0,1], progress, this image's own options (``paths`` formatted for it) -> the SR image
    run: Callable[[np.ndarray, TileProgress | None, dict[str, Path]], np.ndarray]
    cost: Callable[[int, int], ImageCost]  # (height, width) -> its memory and tiles, before it starts
    # Options that name a file the run writes per image (InvSR's --steps-map), "{stem}" standing for the image's.
    paths: dict[str, Path] = field(default_factory=dict)


def _no_files(folder: Path) -> list[Path]:
    return []


@dataclass(frozen=True)
class BuildPlan:
    """One family's part of a bundle."""

    graphs: tuple[GraphSpec, ...]  # exported, built and recorded in this order
    dims: Callable[[int], Dims]  # batch -> the symbolic dimensions at the bundle's tile (samples, profiles)
    pipeline: PipelineInfo
    section: Any  # the family's manifest section (its runtime family's section_type)
    stem: str  # the default bundle folder is engines/<stem>-<backend>-<precision>
    summary: str  # the family's part of the build's first report line
    # Writes the family's extra bundle files (InvSR: the prompt embeddings) and returns their paths.
    write_files: Callable[[Path], list[Path]] = _no_files
    # Check fp16 graphs on their sample inputs and export fp32 instead when the output overflows.
    fp16_fallback: bool = False
    # Why the graphs must not be built at bf16 (OpenVINO runs every operation in it), or None where they may.
    bf16_problem: str | None = None
    min_dims: Dims | None = None  # the smallest shapes the engines take (default: one full tile)

    def profile(self, spec: GraphSpec, batch: int) -> dict[str, list[list[int]]]:
        """One optimization profile per graph: min_dims .. ``batch`` full tiles."""
        return spec.profile(self.min_dims or self.dims(1), self.dims(batch), self.dims(batch))


class FamilySource(ABC):
    """What a build is made from: loaded weights (real or the demo's) and the family's build settings."""

    components: Any  # what the graph specs' make_module take
    demo: bool
    checkpoints: dict[str, CheckpointRecord]

    @property
    @abstractmethod
    def name(self) -> str:
        """The model's name in bundle folder names (``-demo`` for the demo model)."""

    @abstractmethod
    def fingerprint(self) -> str:
        """Identifies the weights (and whatever else the graphs depend on) for the ONNX cache."""

    @abstractmethod
    def plan_build(self, tile: int, batch: int, report: Report) -> BuildPlan:
        """The graphs, constants and files of a bundle for tiles of ``tile`` LR px, ``batch`` per call."""


class ExportFamily(ABC):
    name: ClassVar[str]
    title: ClassVar[str]
    models: ClassVar[tuple[str, ...]]
    build_options: ClassVar[tuple[click.Option, ...]] = ()
    reference_options: ClassVar[tuple[click.Option, ...]] = ()
    image_options: ClassVar[tuple[click.Option, ...]] = ()  # the click form of its own per-image options
    compare_options: ClassVar[tuple[click.Option, ...]] = ()
    bench_options: ClassVar[tuple[click.Option, ...]] = ()
    bench_commands: ClassVar[tuple[click.Command, ...]] = ()  # its own `sr-export bench` reports

    @property
    def run_options(self) -> tuple[click.Option, ...]:
        """The click form of each per-image option the runtime family takes (its ``options_type``'s fields), so that
        an option exists once, in the runtime, and the command line follows it."""
        from sr_runtime.families import family_class

        forms = (*shared.PER_IMAGE_FIRST, *self.image_options, *shared.PER_IMAGE_LAST)
        by_name = {form.name: form for form in forms}
        names = [f.name for f in dataclasses.fields(family_class(self.name).options_type)]
        if missing := [name for name in names if name not in by_name]:
            raise TypeError(f"{self.title}'s per-image options {missing} have no command-line form")
        return tuple(sorted((by_name[name] for name in names), key=forms.index))

    def run_values(self, options: Options) -> dict[str, Any]:
        """The per-image options' values, as the runtime's ``options_type`` takes them."""
        return {option.name: options[option.name] for option in self.run_options}

    def default_tile(self, backend: EngineBackend) -> int:
        """The LR tile a build takes when --tile is not given."""
        return DEFAULT_TILE

    def check_build(self, model: str, options: Options, tile: int) -> None:  # noqa: B027 (optional hook)
        """Cheap checks of the build options, before anything is loaded."""

    @abstractmethod
    def source(self, model: str, options: Options, report: Report) -> FamilySource:
        """The weights to build from: the options' checkpoints, the default places, else the demo model."""

    def reference(self, model: str, options: Options, report: Report) -> ImageRunner:
        raise SRError(f"{self.title} has no PyTorch reference path; build a bundle and pass -e BUNDLE")

    @abstractmethod
    def reference_source(self, manifest: Manifest, options: Options, report: Report) -> FamilySource:
        """The source of ``manifest``'s bundle, from the checkpoints it records (``sr-export compare``)."""

    @abstractmethod
    def bench(self, options: Options, report: Report):
        """Its ``sr_export.bench.family.BenchFamily``: the Table 7 rows it measures."""
