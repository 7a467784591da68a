"""What an InvSR build is made from (the user's checkpoints or the built-in demo model), and its plan:
the schedule, the geometry, the prompt embeddings and the four graphs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from sr_runtime.bounded_parse import read_text
from sr_runtime.errors import SRError
from sr_runtime.families.invsr.graphs import dims
from sr_runtime.families.invsr.section import SCALE, InvSRSection, StepGroup, check_tile
from sr_runtime.manifest import CheckpointRecord, PipelineInfo
from sr_runtime.sd.prompt_embeds import PROMPT_EMBEDS_NAME
from sr_runtime.version import TOOL_VERSION

from ...cache import DEMO_SEED, cache_root, cached_folder
from ...reporting import Report
from ...sd.models import SD_TURBO
from ..base import BuildPlan, FamilySource
from .graphs import GRAPHS
from .locate import find_checkpoints
from .prompt import POSITIVE_PROMPT
from .reference import InvSRComponents, load_components
from .schedule import DEFAULT_TIMESTEPS, build_schedule, check_groups, resolve_timesteps

FAMILY = "invsr"


@dataclass
class InvSRSource(FamilySource):
    components: InvSRComponents
    demo: bool
    checkpoints: dict[str, CheckpointRecord] = field(default_factory=dict)
    noise_predictor_config: str | None = None  # the config's text, part of the fingerprint
    # The schedules the bundle runs (their user timesteps), fewest steps first.
    groups: tuple[tuple[int, ...], ...] = (DEFAULT_TIMESTEPS[1],)

    def __post_init__(self):
        self.groups = check_groups(tuple(resolve_timesteps(len(g), g) for g in self.groups))  # checked, descending

    @property
    def name(self) -> str:
        return "invsr-demo" if self.demo else "invsr"

    def with_groups(self, *groups: tuple[int, ...]) -> InvSRSource:
        return replace(self, groups=tuple(tuple(g) for g in groups))

    def fingerprint(self) -> str:
        checkpoints = {name: record.sha256 for name, record in self.checkpoints.items()}
        return json.dumps({"checkpoints": checkpoints, "np_config": self.noise_predictor_config}, sort_keys=True)

    def plan_build(self, tile: int, batch: int, report: Report) -> BuildPlan:
        import torch

        from ...sd.prompts import encode_prompt

        geometry = self.components.geometry
        check_tile(tile, geometry)
        schedules = [build_schedule(self.components.scheduler_config, g) for g in self.groups]
        with torch.inference_mode():
            embeds = encode_prompt(self.components.sd_turbo, POSITIVE_PROMPT).float().cpu().numpy()
        section = InvSRSection(
            geometry=geometry,
            latent_scale=self.components.latent_scale,
            groups=[StepGroup(list(s.cli_timesteps), list(s.timesteps), list(s.sigmas)) for s in schedules],
            prompt=POSITIVE_PROMPT,
            embed_shape=list(embeds.shape),
        )
        return BuildPlan(
            graphs=GRAPHS,
            dims=lambda n: dims(n, tile, geometry, embeds.shape),
            pipeline=PipelineInfo(family=FAMILY, scale=SCALE, tile=tile, batch=batch),
            section=section,
            stem=f"{self.name}-s{'-'.join(str(s.steps) for s in schedules)}",
            summary=f"timesteps {' / '.join(str(list(s.cli_timesteps)) for s in schedules)}",
            write_files=lambda folder: _save(folder / PROMPT_EMBEDS_NAME, embeds),
        )


def _save(path: Path, array: np.ndarray) -> list[Path]:
    np.save(path, array)
    return [path]


def demo_checkpoints() -> tuple[Path, Path]:
    """Tiny random-weight checkpoints in the official formats, written once into the cache.

    Going through the real loaders keeps the demo on the same code path as real checkpoints.
    """
    from .random_checkpoints import write_random_noise_predictor, write_random_sd_turbo

    def write(folder: Path) -> None:
        write_random_sd_turbo(folder / "sd-turbo", seed=DEMO_SEED)
        write_random_noise_predictor(folder / "noise-predictor", seed=DEMO_SEED)

    folder = cached_folder(cache_root() / "demo-checkpoints" / f"seed{DEMO_SEED}-{TOOL_VERSION}", write)
    return folder / "sd-turbo", next((folder / "noise-predictor").glob("*.pth"))


def load_source(sd_path: Path, np_path: Path, config: str | Path | None, demo: bool, report: Report,
                groups: tuple[tuple[int, ...], ...] = (DEFAULT_TIMESTEPS[1],)) -> InvSRSource:
    from ...checkpoints import file_record
    from ...sd.loading import folder_record

    report(f"loading SD-Turbo from {sd_path} and the noise predictor from {np_path}")
    components = load_components(sd_path, np_path, config)
    report("hashing checkpoints")
    checkpoints = {"sd_turbo": folder_record(sd_path, SD_TURBO), "noise_predictor": file_record(np_path)}
    config_text = read_text(Path(config), "noise predictor config") if config else None
    return InvSRSource(components, demo, checkpoints, config_text, groups)


def resolve_source(sd_turbo, noise_predictor, noise_predictor_config, groups: tuple[tuple[int, ...], ...],
                   allow_demo: bool = True, report: Report = print) -> InvSRSource:
    """The given checkpoints, else the default places, else (``allow_demo``) the demo model."""
    found = find_checkpoints(sd_turbo, noise_predictor)
    if found is not None:
        return load_source(*found, noise_predictor_config, False, report, groups)
    if not allow_demo:
        raise SRError("no checkpoints found: pass --sd-turbo DIR and --noise-predictor PTH")
    if noise_predictor_config is not None:
        raise SRError(f"--noise-predictor-config {noise_predictor_config} describes a noise predictor checkpoint, and "
                      "none was found: pass --sd-turbo DIR and --noise-predictor PTH (the demo model has its own config)")
    report(
        "WARNING: no InvSR checkpoints found (--sd-turbo / --noise-predictor, the Hugging Face cache, "
        "./weights); building the built-in DEMO model with random weights: its outputs are NOT meaningful"
    )
    sd_path, np_path = demo_checkpoints()
    return load_source(sd_path, np_path, next(np_path.parent.glob("*.yaml"), None), True, report, groups)
