"""What the runtime sides of the one-step SD families (S3Diff, OSEDiff) share as ``Family`` subclasses: graphs that
include the bundle's own tiled-VAE segments, tile options checked against the VAE, the image cost, and the lines of
``sr-export inspect`` for the DDPM step and the tiled VAE."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from ..family import Family
from ..graph_io import GraphIO
from ..manifest import Manifest
from ..resources import ImageCost


class OneStepFamily(Family):
    # (height, width, section, options) -> what the image costs; the family's cost model
    image_cost: ClassVar[Callable[[int, int, Any, Any], ImageCost]]

    def __init__(self, bundle: Path, manifest: Manifest):
        self.graphs = self.section_graphs(manifest.section)  # the segments' count is the bundle's
        super().__init__(bundle, manifest)

    @staticmethod
    @abstractmethod
    def section_graphs(section: Any) -> tuple[GraphIO, ...]:
        """The family's graphs and the VAE segments its section records."""

    def check_options(self, options: Any) -> None:
        options.check_vae(self.section.vae_factor)

    def cost(self, height: int, width: int, options: Any) -> ImageCost:
        return self.image_cost(height, width, self.section, options)

    def describe(self) -> list[str]:
        s = self.section
        return [
            f"one step    t = {s.timestep}, x0 = (z - {s.sqrt_beta_prod:.6g} eps) / {s.sqrt_alpha_prod:.6g}"
            + (f", clamped to +-{s.clip_sample_range:g}" if s.clip_sample_range is not None else ""),
            *self.describe_own(),
            f"tiled VAE   {len(s.encoder_segments)} encoder and {len(s.decoder_segments)} decoder segments",
        ]

    @abstractmethod
    def describe_own(self) -> list[str]:
        """The family's own ``inspect`` lines, between the step and the tiled VAE."""
