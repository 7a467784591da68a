"""The Stable Diffusion releases the SD families build on, as the official code of each family loads them.

One record per release: its hub repository, the variable that points sr-export at a local copy, and the
scheduler its ``model_index.json`` names (the families build their own one-step or Euler arithmetic from
that scheduler's config, so the config must be the one the release ships)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SDModel:
    label: str  # how messages name it
    repo_id: str
    env: str  # the variable naming a local copy
    scheduler: str  # the diffusers class its model_index.json and scheduler_config.json name
    official_cache_dir: Path  # the official scripts' download folder, relative to the working directory

    @property
    def hub_folder(self) -> str:
        return "models--" + self.repo_id.replace("/", "--")


# InvSR's sampler and S3Diff load it with from_pretrained(cache_dir="weights") or a diffusers folder.
SD_TURBO = SDModel("SD-Turbo", "stabilityai/sd-turbo", "SR_EXPORT_SD_TURBO", "EulerDiscreteScheduler", Path("weights"))
# OSEDiff's --pretrained_model_name_or_path; the release ships a PNDM config, from which OSEDiff builds DDPM.
SD21_BASE = SDModel("SD-2.1-base", "stabilityai/stable-diffusion-2-1-base", "SR_EXPORT_SD21", "PNDMScheduler",
                    Path("preset") / "models")
