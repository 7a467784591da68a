"""The engine bundle's manifest: the only contract between the export side and the runtime.

A bundle folder holds ``manifest.json``, one engine file per graph and the files its model family
needs (InvSR: ``prompt_embeds.npy``).
The manifest is written last (and the folder renamed into place), so a folder with a manifest is
complete; the runtime still checks every file it names.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import SRError

BUNDLE_FORMAT = "sr-export-bundle"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
PROMPT_EMBEDS_NAME = "prompt_embeds.npy"
BACKENDS = ("onnxruntime-cpu", "onnxruntime-cuda", "tensorrt")
PRECISIONS = ("fp32", "fp16")


@dataclass
class TensorInfo:
    name: str
    dtype: str  # numpy dtype name: "float32" / "float16"
    shape: list  # ints and symbolic names ("batch", "tile", ...)


@dataclass
class FileRecord:
    file: str  # relative to the bundle folder
    sha256: str
    size: int


@dataclass
class GraphInfo:
    file: str
    sha256: str
    size: int
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    # input name -> [min, opt, max] concrete shapes the engine is built for
    profile: dict[str, list[list[int]]] = field(default_factory=dict)
    precision_summary: dict = field(default_factory=dict)  # e.g. TensorRT layer precisions
    # Files the engine file loads at run time: an ONNX graph over 2 GiB keeps its weights in a .data file.
    data_files: list[FileRecord] = field(default_factory=list)

    def files(self) -> list[FileRecord]:
        """Every file this graph needs, the engine file first."""
        return [FileRecord(self.file, self.sha256, self.size), *self.data_files]


@dataclass
class PipelineInfo:
    """The common fields come first; the rest belong to one family and default to empty for the others
    (each runtime family checks its own in ``sr_runtime.family.Family.__init__``)."""

    family: str  # "invsr" or "rrdbnet": picks the runtime chain
    scale: int
    tile: int
    batch: int
    # InvSR
    latent_channels: int = 0
    latent_scale: float = 0.0
    cli_timesteps: list[int] = field(default_factory=list)
    timesteps: list[float] = field(default_factory=list)  # t_i = T_i - 1, fed to the networks
    sigmas: list[float] = field(default_factory=list)  # N + 1 values, the last one is the final σ
    prompt: str = ""
    embed_shape: list[int] = field(default_factory=list)
    # RRDBNet: LR px of context kept on each side of a tile's output (overlap-crop tiling)
    overlap: int = 0

    @property
    def steps(self) -> int:
        return len(self.timesteps)


@dataclass
class TargetInfo:
    """The GPU a TensorRT bundle was built on: TensorRT plans are specific to it."""

    gpu_name: str
    compute_capability: str  # "9.0"
    # TensorRT hardware compatibility level the plans were built with: "none" (this compute capability
    # only) or "ampere_plus" (any GPU of compute capability 8.0 and up).
    hardware_compatibility: str = "none"


@dataclass
class Manifest:
    tool_version: str
    backend: str
    backend_version: str
    precision: str
    demo: bool
    pipeline: PipelineInfo
    graphs: dict[str, GraphInfo]
    checkpoints: dict[str, dict]  # name -> {"path": ..., "sha256": ...} or {"files": {rel: sha}}
    target: TargetInfo | None = None  # TensorRT only
    created: str = ""
    # Why the engines are fp32 although fp16 was asked for (fp16 overflowed on the sample input); None otherwise.
    precision_fallback: str | None = None
    format: str = BUNDLE_FORMAT
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict) -> Manifest:
        pipeline = PipelineInfo(**data["pipeline"])
        graphs = {
            name: GraphInfo(
                **{
                    **g,
                    "inputs": [TensorInfo(**t) for t in g["inputs"]],
                    "outputs": [TensorInfo(**t) for t in g["outputs"]],
                    "data_files": [FileRecord(**f) for f in g.get("data_files", [])],
                }
            )
            for name, g in data["graphs"].items()
        }
        target = TargetInfo(**data["target"]) if data.get("target") else None
        return cls(**{**data, "pipeline": pipeline, "graphs": graphs, "target": target})


def read_manifest(bundle: Path, tool_version: str) -> Manifest:
    """Loads and checks a bundle's manifest; every refusal is one line that says what to do."""
    path = Path(bundle) / MANIFEST_NAME
    if not Path(bundle).is_dir():
        raise SRError(f"bundle {bundle} does not exist (build one with `sr-export build`)")
    if not path.is_file():
        raise SRError(f"{bundle} is not a complete bundle: {MANIFEST_NAME} is missing (an interrupted build?); rebuild it")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SRError(f"{path} is not valid JSON ({err}); rebuild the bundle") from err
    if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
        raise SRError(f"{path} is not an sr-export bundle manifest")
    if data.get("format_version") != FORMAT_VERSION or data.get("tool_version") != tool_version:
        raise SRError(
            f"bundle {bundle} was built by sr-export {data.get('tool_version')} (format {data.get('format_version')}), "
            f"this is sr-export {tool_version} (format {FORMAT_VERSION}); rebuild it with `sr-export build`"
        )
    try:
        manifest = Manifest.from_dict(data)
    except (KeyError, TypeError, AttributeError) as err:
        raise SRError(f"{path} is malformed ({type(err).__name__}: {err}); rebuild the bundle") from err
    if manifest.backend not in BACKENDS:
        raise SRError(f"{path}: unknown backend {manifest.backend!r} (this runtime knows {', '.join(BACKENDS)})")
    if manifest.precision not in PRECISIONS:
        raise SRError(f"{path}: unknown precision {manifest.precision!r} (this runtime knows {', '.join(PRECISIONS)})")
    if problem := pipeline_problem(manifest.pipeline):
        raise SRError(f"{path} is malformed ({problem}); rebuild the bundle")
    for name, graph in manifest.graphs.items():
        for record in graph.files():
            if Path(record.file).name != record.file:  # a manifest must not reach outside its bundle
                raise SRError(f"{path}: graph {name} names {record.file!r}, which is not a file in the bundle")
            file = Path(bundle) / record.file
            if not file.is_file() or file.stat().st_size != record.size:
                raise SRError(f"bundle {bundle}: {record.file} of graph {name} is missing or truncated; rebuild it")
    return manifest


def pipeline_problem(p: PipelineInfo) -> str | None:
    """What is wrong with the fields every family has; families check their own fields on top."""
    if p.tile < 1 or p.batch < 1 or p.scale < 1:
        return f"tile {p.tile}, batch {p.batch} and scale {p.scale} must be positive"
    if p.overlap < 0:
        return f"overlap {p.overlap} is negative"
    return None


def schedule_problem(p: PipelineInfo) -> str | None:
    """InvSR's: a non-empty schedule with one more sigma than timesteps."""
    if p.steps < 1:
        return "no timesteps"
    if len(p.sigmas) != p.steps + 1:
        return f"{p.steps} timesteps need {p.steps + 1} sigmas, it has {len(p.sigmas)}"
    return None
