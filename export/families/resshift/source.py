"""What a ResShift / SinSR build is made from (the user's checkpoints or the built-in demo model), and its
plan: the three graphs, their dynamic patch sizes and the sampling constants."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sr_runtime.errors import SRError
from sr_runtime.families.resshift import ResShiftFamily
from sr_runtime.families.resshift.graphs import SCALE, dims
from sr_runtime.families.resshift.section import check_tile
from sr_runtime.manifest import CheckpointRecord, Manifest, PipelineInfo
from sr_runtime.version import TOOL_VERSION

from ...cache import DEMO_SEED, cache_root, cached_folder
from ...checkpoints import file_record
from ...reporting import Report
from ..base import BuildPlan, FamilySource
from .components import ResShiftComponents
from .config import ResShiftConfig, load_config, parse_params
from .graphs import graph_specs
from .loaders import load_autoencoder, load_denoiser
from .official_configs import AUTOENCODER_FILE, MODELS, ModelSpec

WEIGHTS_FOLDER = Path("weights")  # where the official CLIs download to


@dataclass
class ResShiftSource(FamilySource):
    components: ResShiftComponents
    demo: bool
    checkpoints: dict[str, CheckpointRecord] = field(default_factory=dict)

    @property
    def name(self) -> str:
        model = self.components.spec.name
        return f"{model}-demo" if self.demo else model

    def fingerprint(self) -> str:
        """The weights and what the graphs are built from: the typed network configs and the latent scale.
        By content, not by file or key names: one denoiser under the v1, v3 or SinSR layout shares its
        export (the schedule is data the runtime feeds)."""
        config = self.components.config
        return json.dumps({
            "family": ResShiftFamily.name,
            "checkpoints": {name: sorted(record.sha256.values()) for name, record in self.checkpoints.items()},
            "networks": {"unet": asdict(config.unet), "vq": asdict(config.vq),
                         "scale_factor": config.diffusion.scale_factor},
        }, sort_keys=True)

    def plan_build(self, tile: int, batch: int, report: Report) -> BuildPlan:
        check_tile(tile)
        section = self.components.section()
        channels, multiple = section.latent_channels, section.pad_multiple
        pipeline = PipelineInfo(family=ResShiftFamily.name, scale=SCALE, tile=tile, batch=batch)
        largest = section.max_patch(pipeline)
        return BuildPlan(
            graphs=graph_specs(multiple),
            dims=lambda n: dims(n, largest, largest, channels),
            pipeline=pipeline,
            section=section,
            stem=self.name,
            summary=f"{len(section.steps)} UNet call(s), patches of {multiple} to {largest} px in steps of {multiple}",
            fp16_fallback=True,
            # The fp16 export keeps the codebook distances and argmin in fp32; OpenVINO's bf16 cannot be told to.
            bf16_problem="its VQ codebook lookup flips codes when the distances are bf16 (23 dB from the fp32 "
                         "reference on the tests' model); build it fp32",
            min_dims=dims(1, multiple, multiple, channels),
        )


def load_source(spec: ModelSpec, config: ResShiftConfig, denoiser: Path, autoencoder: Path, demo: bool,
                report: Report) -> ResShiftSource:
    report(f"loading the {spec.name} denoiser from {denoiser} and the autoencoder from {autoencoder}")
    components = ResShiftComponents(spec, config, load_denoiser(denoiser, config), load_autoencoder(autoencoder, config))
    report("hashing checkpoints")
    return ResShiftSource(components, demo, {"denoiser": file_record(denoiser), "autoencoder": file_record(autoencoder)})


def demo_checkpoints(spec: ModelSpec) -> tuple[Path, Path, Path]:
    """Tiny seeded random checkpoints and config in the official formats, written once into the cache and
    read by the real loaders, so the demo takes the same path as real checkpoints."""
    from .random_checkpoints import write_random_model

    folder = cached_folder(cache_root() / "demo-checkpoints" / f"{spec.name}-seed{DEMO_SEED}-{TOOL_VERSION}",
                           lambda tmp: write_random_model(tmp, spec.name, seed=DEMO_SEED))
    return folder / spec.checkpoint, folder / AUTOENCODER_FILE, folder / spec.config_name


def _default(path: str | Path | None, name: str) -> Path | None:
    if path:
        return Path(path)
    candidate = WEIGHTS_FOLDER / name
    return candidate if candidate.is_file() else None


def resolve_source(model: str, checkpoint: str | Path | None, autoencoder: str | Path | None,
                   config: str | Path | None, allow_demo: bool = True, report: Report = print) -> ResShiftSource:
    """The given checkpoints, else ./weights/<official names>, else (``allow_demo``) the demo model."""
    spec = MODELS[model]
    denoiser, vq = _default(checkpoint, spec.checkpoint), _default(autoencoder, AUTOENCODER_FILE)
    if denoiser is not None and vq is not None:
        return load_source(spec, load_config(spec, config), denoiser, vq, False, report)
    # Half an answer would mix a real network with demo weights: meaningless images that look like a real run.
    if denoiser is not None:
        raise SRError(f"found the denoiser {denoiser} but no autoencoder; pass --autoencoder PTH "
                      f"or put {AUTOENCODER_FILE} in ./{WEIGHTS_FOLDER}")
    if vq is not None:
        raise SRError(f"found the autoencoder {vq} but no {spec.name} denoiser; pass --checkpoint PTH "
                      f"or put {spec.checkpoint} in ./{WEIGHTS_FOLDER}")
    if not allow_demo:
        raise SRError(f"no {spec.name} checkpoints found: pass --checkpoint PTH and --autoencoder PTH")
    if config:
        raise SRError("--config describes checkpoints: pass it with --checkpoint and --autoencoder")
    report(f"WARNING: no {spec.name} checkpoints found (--checkpoint / --autoencoder, ./{WEIGHTS_FOLDER}); building "
           "the built-in DEMO model with random weights: its outputs are NOT meaningful")
    denoiser, vq, demo_config = demo_checkpoints(spec)
    return load_source(spec, load_config(spec, demo_config), denoiser, vq, True, report)


def manifest_source(manifest: Manifest, report: Report) -> ResShiftSource:
    """The source a bundle was built from: its recorded checkpoints and config (``sr-export compare``)."""
    section = manifest.section
    if section.model not in MODELS or set(manifest.checkpoints) != {"denoiser", "autoencoder"}:
        raise SRError(f"the bundle records model {section.model!r} and checkpoints {sorted(manifest.checkpoints)}; "
                      f"this sr-export builds {', '.join(MODELS)} from a denoiser and an autoencoder")
    spec = MODELS[section.model]
    paths = {name: Path(record.path) for name, record in manifest.checkpoints.items()}
    return load_source(spec, parse_params(spec, section.config, "the bundle's manifest"), paths["denoiser"],
                       paths["autoencoder"], manifest.demo, report)
