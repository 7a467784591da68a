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
    from sr_export.build.select import tensorrt_problem

    if problem := tensorrt_problem():
        for item in marked:
            item.add_marker(pytest.mark.skip(reason=f"TensorRT unavailable: {problem}"))


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(SD-Turbo diffusers folder, noise predictor .pth, its official YAML), written once per run."""
    from sr_export.tiny_checkpoints import write_tiny_noise_predictor, write_tiny_sd_turbo

    root = tmp_path_factory.mktemp("tiny-invsr")
    sd = write_tiny_sd_turbo(root / "sd-turbo", seed=1)
    pth, yaml = write_tiny_noise_predictor(root / "noise-predictor", seed=1)
    return sd, pth, yaml


@pytest.fixture(scope="session")
def tiny_components(tiny_checkpoints):
    from sr_export.reference import load_components

    sd, pth, yaml = tiny_checkpoints
    return load_components(sd, pth, yaml)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Builds cache their ONNX per test session, never in the user's ~/.cache."""
    cache = tmp_path_factory.getbasetemp() / "sr-export-cache"
    monkeypatch.setenv("SR_EXPORT_CACHE", str(cache))
    return cache
