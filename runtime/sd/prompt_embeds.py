"""The prompt embedding a bundle stores (``prompt_embeds.npy``) when its prompt is fixed at build time."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..backends.base import REBUILD_HINT
from ..errors import SRError

PROMPT_EMBEDS_NAME = "prompt_embeds.npy"


def load_prompt_embeds(bundle: Path, embed_shape: list[int]) -> np.ndarray:
    """The bundle's embedding as float32, refused unless it has the manifest's ``embed_shape``."""
    path = bundle / PROMPT_EMBEDS_NAME
    try:
        embeds = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise SRError(f"{path} is unreadable ({err}); {REBUILD_HINT}") from err
    if list(embeds.shape) != embed_shape:
        raise SRError(f"{path} has shape {embeds.shape}, the manifest says {embed_shape}; {REBUILD_HINT}")
    return embeds.astype(np.float32)
