"""The runtime's entry point: open an engine bundle and upscale images by chaining its engines.

The manifest's ``pipeline.family`` picks the family (``sr_runtime.families``): which engine calls a tile
batch makes, and how an image becomes tile batches and back. The manifest's ``backend`` picks how the
engines run (``sr_runtime.backends``).
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .backends import backend_for
from .backends.base import ChainId, EngineSession, RuntimeOptions, TileChain
from .bundle_check import check_files
from .bundle_manifest import read_manifest
from .errors import SRError
from .families import family_class
from .family import Family, TileProgress
from .manifest import Manifest
from .resources import ImageCost
from .version import TOOL_VERSION

log = logging.getLogger(__name__)


def open_family(bundle: Path, manifest: Manifest) -> Family:
    return family_class(manifest.pipeline.family)(bundle, manifest)


class Upscaler:
    """Super-resolution with an engine bundle."""

    def __init__(self, manifest: Manifest, chain: TileChain, sessions: dict[str, EngineSession], family: Family):
        self.manifest = manifest
        self._chain = chain
        self.sessions = sessions  # one per graph: benchmarks time them one by one
        self._family = family

    @classmethod
    def from_bundle(
        cls, path: str | Path, backend: str | None = None, options: RuntimeOptions | None = None, verify: bool = True
    ) -> Upscaler:
        """Opens a bundle; ``backend`` defaults to the one it was built for (anything else is refused).
        ``verify``: check every file's sha256 first, so a damaged bundle is refused before it runs."""
        bundle = Path(path)
        manifest = read_manifest(bundle, TOOL_VERSION)
        engine_backend = backend_for(backend or manifest.backend, options)
        engine_backend.check(manifest)  # before hashing GBs: a bundle for another machine is refused at once
        if verify:
            check_files(bundle, manifest)
        family = open_family(bundle, manifest)
        if manifest.demo:
            log.warning("%s is a DEMO bundle (random weights): its outputs are NOT meaningful", bundle)
        sessions = engine_backend.open(bundle, manifest)
        plans = lru_cache(maxsize=8)(family.plan)  # full batches, the last partial one, smaller images
        return cls(manifest, engine_backend.chain(sessions, plans, manifest.pipeline.batch), sessions, family)

    @property
    def demo(self) -> bool:
        return self.manifest.demo

    @property
    def family(self) -> Family:
        return self._family

    def run_tiles(self, *arrays: np.ndarray, chain: ChainId | None = None) -> np.ndarray:
        """One tile batch through the chain: the family's feeds in order (LR tiles (n,3,h,w) in [0,1]
        first; InvSR: then the predictor and VAE noises) -> SR tiles float32, unclamped; n <= the batch.
        ``chain``: which of the family's chains over these feeds (InvSR: a step group, ``steps_chain(group)``);
        None: the family's ``default_chain``."""
        feeds = self._family.feeds
        if len(arrays) != len(feeds):
            raise SRError(f"a {self._family.name} bundle takes {', '.join(feeds)} per tile batch, got {len(arrays)} arrays")
        chain = self._family.default_chain if chain is None else chain
        return np.asarray(self._chain(dict(zip(feeds, arrays, strict=True)), chain), dtype=np.float32)

    def cost(self, height: int, width: int, **options: Any) -> ImageCost:
        """Memory and tiles an image of ``height`` x ``width`` will take, with the same ``options``."""
        return self._family.cost(height, width, self._family.options(**options))

    def upscale(self, image: np.ndarray, on_tiles_done: TileProgress | None = None, **options: Any) -> np.ndarray:
        """``image`` (H,W,3) float32 in [0,1] -> (scale*H, scale*W, 3) float32 in [0,1]. ``options`` are
        the family's (InvSR: ``color_fix``, ``seed``); one it does not have is refused."""
        return self._family.upscale(image, self._chain, self._family.options(**options), on_tiles_done)
