"""OSEDiff's prompt, built on the host as ``test_osediff.py`` builds it: RAM's tags whose probability is above their
class threshold, in class order, joined with ", ", then the user's prompt: ``f"{tags}, {prompt},"``."""

from __future__ import annotations

import numpy as np


def tag_string(probabilities: np.ndarray, tags: list[str], thresholds: list[float]) -> str:
    """One image's tags: those strictly above their threshold (compared in float32, as the official does)."""
    chosen = np.asarray(probabilities, dtype=np.float32) > np.asarray(thresholds, dtype=np.float32)
    return ", ".join(tag for tag, keep in zip(tags, chosen, strict=True) if keep)


def validation_prompt(tags: str, prompt: str) -> str:
    """get_validation_prompt's string (with no tags and no prompt: ", ,")."""
    return f"{tags}, {prompt},"
