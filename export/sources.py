"""What a build is made from: the user's real checkpoints, or the built-in demo model."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from sr_runtime.bundle_check import sha256_file
from sr_runtime.version import TOOL_VERSION

from .bundle import atomic_folder
from .families import FamilyBuild, invsr_build
from .locate import find_checkpoints
from .reference import InvSRComponents, load_components

DEMO_SEED = 0


def cache_root() -> Path:
    return Path(os.environ.get("SR_EXPORT_CACHE") or Path.home() / ".cache" / "sr-export")


@dataclass
class ModelSource:
    components: InvSRComponents
    demo: bool
    # name -> {"path": str, "sha256": {relative file: sha256}}
    checkpoints: dict = field(default_factory=dict)
    noise_predictor_config: str | None = None

    @property
    def name(self) -> str:
        return "invsr-demo" if self.demo else "invsr"

    def fingerprint(self) -> str:
        """Identifies the weights (and config) for the ONNX cache."""
        return json.dumps({"checkpoints": self.checkpoints, "np_config": self.noise_predictor_config}, sort_keys=True)

    def plan_build(self, opts, report) -> FamilyBuild:
        """What InvSR adds to a bundle: schedule, prompt embeddings, four graphs."""
        return invsr_build(self, opts, report)


def _hashes(folder: Path, files: list[Path]) -> dict[str, str]:
    return {str(f.relative_to(folder)): sha256_file(f) for f in files}


def demo_checkpoints() -> tuple[Path, Path]:
    """Tiny random-weight checkpoints in the official formats, written once into the cache.

    Going through the real loaders keeps the demo on the same code path as real checkpoints.
    """
    from .tiny_checkpoints import write_tiny_noise_predictor, write_tiny_sd_turbo

    folder = cache_root() / "demo-checkpoints" / f"seed{DEMO_SEED}-{TOOL_VERSION}"
    if not (folder / "complete").is_file():
        with atomic_folder(folder) as tmp:
            write_tiny_sd_turbo(tmp / "sd-turbo", seed=DEMO_SEED)
            write_tiny_noise_predictor(tmp / "noise-predictor", seed=DEMO_SEED)
            (tmp / "complete").write_text("ok\n")
    pth = next((folder / "noise-predictor").glob("*.pth"))
    return folder / "sd-turbo", pth


def resolve_source(sd_turbo, noise_predictor, noise_predictor_config, allow_demo: bool = True, report=print) -> ModelSource:
    from .models.sd_turbo import resolve_sd_turbo_folder, weight_files

    found = find_checkpoints(sd_turbo, noise_predictor)
    demo = found is None
    if demo:
        if not allow_demo:
            from sr_runtime.errors import SRError

            raise SRError("no checkpoints found: pass --sd-turbo DIR and --noise-predictor PTH")
        report(
            "WARNING: no InvSR checkpoints found (--sd-turbo / --noise-predictor, the Hugging Face cache, "
            "./weights); building the built-in DEMO model with random weights: its outputs are NOT meaningful"
        )
        sd_path, np_path = demo_checkpoints()
        config = next(np_path.parent.glob("*.yaml"), None)
    else:
        sd_path, np_path = found
        config = noise_predictor_config
    report(f"loading SD-Turbo from {sd_path} and the noise predictor from {np_path}")
    components = load_components(sd_path, np_path, config)
    sd_folder = resolve_sd_turbo_folder(sd_path)
    report("hashing checkpoints")
    checkpoints = {
        "sd_turbo": {"path": str(sd_folder), "sha256": _hashes(sd_folder, weight_files(sd_folder))},
        "noise_predictor": {"path": str(np_path), "sha256": {np_path.name: sha256_file(np_path)}},
    }
    config_text = Path(config).read_text() if config else None
    return ModelSource(components, demo, checkpoints, config_text)
