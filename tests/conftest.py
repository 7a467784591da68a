"""Shared fixtures: tiny official-format checkpoints and an isolated sr-export cache."""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``tensorrt`` skip, with the reason, wherever TensorRT cannot build and run engines
    (no tensorrt package, no usable GPU, no cuda-python)."""
    marked = [item for item in items if item.get_closest_marker("tensorrt")]
    if not marked:
        return
    from sr_export.builders.backends import BACKENDS

    if problem := BACKENDS["tensorrt"].problem():
        for item in marked:
            item.add_marker(pytest.mark.skip(reason=f"TensorRT unavailable: {problem}"))


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(SD-Turbo diffusers folder, noise predictor .pth, its official YAML), written once per run."""
    from sr_export.families.invsr.random_checkpoints import (
        write_random_noise_predictor,
        write_random_sd_turbo,
    )

    root = tmp_path_factory.mktemp("tiny-invsr")
    sd = write_random_sd_turbo(root / "sd-turbo", seed=1)
    pth, yaml = write_random_noise_predictor(root / "noise-predictor", seed=1)
    return sd, pth, yaml


@pytest.fixture(scope="session")
def tiny_components(tiny_checkpoints):
    from sr_export.families.invsr.reference import load_components

    sd, pth, yaml = tiny_checkpoints
    return load_components(sd, pth, yaml)


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Builds cache their ONNX per test session, never in the user's ~/.cache: session-scoped, so it is set
    before any module-scoped fixture builds a bundle."""
    cache = tmp_path_factory.getbasetemp() / "sr-export-cache"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SR_EXPORT_CACHE", str(cache))
        yield cache
