"""The checks every family makes of what it is handed: integers (never a bool, numpy's included) and RGB images."""

from __future__ import annotations

import numpy as np

from .errors import SRError


def is_int(value: object, minimum: int | None = None, maximum: int | None = None) -> bool:
    """An integer within [minimum, maximum] where given. A bool is not one: ``True`` as a tile size is a mistake."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        return False
    return (minimum is None or value >= minimum) and (maximum is None or value <= maximum)


def require_positive_int(name: str, value: object, optional: bool = False) -> None:
    """``optional``: None stands for a default and passes."""
    if not (optional and value is None) and not is_int(value, 1):
        raise SRError(f"{name} must be a positive integer, got {value!r}")


def require_non_negative_int(name: str, value: object, optional: bool = False) -> None:
    if not (optional and value is None) and not is_int(value, 0):
        raise SRError(f"{name} must be a non-negative integer, got {value!r}")


def check_rgb_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3:
        raise SRError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
