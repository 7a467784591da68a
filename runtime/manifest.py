"""The engine bundle's manifest: the only contract between the export side and the runtime.

A bundle folder holds ``manifest.json``, one engine file per graph and whatever files its model family
needs (InvSR: ``prompt_embeds.npy``). The manifest is written last (and the folder renamed into place),
so a folder with a manifest is complete; the runtime still checks every file it names. The manifest
carries the sha256 of its own text (``checksum``) beside those of the other files, so a value changed in
it (a sigma, an overlap), or any other byte, is refused like a changed engine.

The common part is typed here; ``section`` is the model family's own record (its constants), typed by
the record type the caller gives for the pipeline's ``family``: the contract knows no family
(``bundle_manifest`` reads a bundle with the runtime's families).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .bounded_parse import parse_json, read_text
from .errors import SRError
from .precision import Precision
from .records import RecordError, parse_record, record_dict

BUNDLE_FORMAT = "sr-export-bundle"
FORMAT_VERSION = 3  # 3: the manifest's own checksum
MANIFEST_NAME = "manifest.json"
TENSOR_DTYPES = ("float32", "float16")
CHECKSUM = "checksum"  # the manifest's last field: the sha256 of its own text (see manifest_text)
_UNSEALED = "0" * 64  # the checksum's value while the text is hashed
MAX_MANIFEST_BYTES = 4 * 2**20  # the largest bundle's (S3Diff, 58 graphs) is about 100 kB


@dataclass
class TensorInfo:
    name: str
    dtype: str  # numpy dtype name: "float32" / "float16"
    shape: list[str | int]  # ints and symbolic names ("batch", "tile", ...)


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
    precision_summary: dict[str, Any] = field(default_factory=dict)  # e.g. TensorRT layer precisions
    # Files the engine file loads at run time: an ONNX graph over 2 GiB keeps its weights in a .data file.
    data_files: list[FileRecord] = field(default_factory=list)
    rewrites: str = ""  # what the builder rewrote in the exported graph (ONNX Runtime CPU: convolutions)

    def files(self) -> list[FileRecord]:
        """Every file this graph needs, the engine file first."""
        return [FileRecord(self.file, self.sha256, self.size), *self.data_files]


@dataclass
class CheckpointRecord:
    path: str
    sha256: dict[str, str]  # file (relative to path, or its name) -> sha256


@dataclass
class PipelineInfo:
    """What every family has; the rest is the family's ``section``."""

    family: str  # picks the runtime chain (sr_runtime.families)
    scale: int
    tile: int  # LR px per tile side the engines are built for
    batch: int  # tiles per engine call, at most

    def problem(self) -> str | None:
        if self.tile < 1 or self.batch < 1 or self.scale < 1:
            return f"tile {self.tile}, batch {self.batch} and scale {self.scale} must be positive"
        return None


@dataclass
class TargetInfo:
    """The GPU a TensorRT bundle was built on: TensorRT plans are specific to it."""

    gpu_name: str
    compute_capability: str  # "9.0"


@dataclass
class CpuTargetInfo:
    """The CPU an ONNX Runtime CPU bundle's graphs were optimised for when it was built: the saved blocked
    convolution layout is specific to its instruction sets (``isa``, as ``cpu_target.ISA_FLAGS`` lists them)."""

    cpu_name: str
    isa: list[str]

    def __str__(self) -> str:
        return f"{self.cpu_name} ({', '.join(self.isa) or 'no AVX'})"


@dataclass
class Manifest:
    tool_version: str
    backend: str  # a key of sr_runtime.backends.BACKEND_CLASSES, checked when the bundle is opened
    backend_version: str
    precision: Precision
    demo: bool
    pipeline: PipelineInfo
    section: Any  # the family's record (its section_type), parsed by read_manifest
    graphs: dict[str, GraphInfo]
    checkpoints: dict[str, CheckpointRecord]
    files: list[FileRecord] = field(default_factory=list)  # the family's other files (prompt_embeds.npy)
    target: TargetInfo | None = None  # TensorRT only
    cpu_target: CpuTargetInfo | None = None  # ONNX Runtime CPU graphs optimised offline (--optimize-for-this-cpu)
    created: str = ""
    # Why the engines are fp32 although fp16 was asked for (fp16 overflowed on the sample input); None otherwise.
    precision_fallback: str | None = None
    format: str = BUNDLE_FORMAT
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        """The manifest's text, with its ``checksum`` (which ``read_manifest`` checks)."""
        return manifest_text(record_dict(self))

    def all_files(self) -> list[tuple[str, FileRecord]]:
        """(what it is, record) of every file the runtime reads."""
        return [(f"graph {name}", r) for name, g in self.graphs.items() for r in g.files()] + [
            ("the family", r) for r in self.files]


def _sealed(text: str, checksum: str) -> str:
    """``text`` whose last ``"checksum": "..."`` holds ``checksum``: JSON escapes quotes inside strings, so only
    the key itself can read so."""
    key = f'"{CHECKSUM}": "'
    at = text.rfind(key) + len(key)
    return text[:at] + checksum + text[at + len(_UNSEALED):]


def _text_checksum(text: str) -> str:
    return hashlib.sha256(_sealed(text, _UNSEALED).encode()).hexdigest()


def manifest_text(data: dict) -> str:
    """A manifest's JSON text, its last field the sha256 of the whole text (taken with that field zeroed): every
    byte of the file is covered, layout included."""
    text = json.dumps({**{k: v for k, v in data.items() if k != CHECKSUM}, CHECKSUM: _UNSEALED}, indent=2,
                      allow_nan=False)
    return _sealed(text, _text_checksum(text))


# A family's name -> the record type of its manifest section (an SRError for a family the caller does not run).
SectionTypes = Callable[[str], type]


def parse_manifest(data: dict, section_types: SectionTypes) -> Manifest:
    """The typed manifest, its family's section included; a RecordError names a field of the wrong type. The
    checksum is ``read_manifest``'s to check."""
    manifest = parse_record(Manifest, {k: v for k, v in data.items() if k != CHECKSUM}, "manifest")
    manifest.section = parse_record(section_types(manifest.pipeline.family), manifest.section, "manifest.section")
    return manifest


def read_manifest(bundle: Path, tool_version: str, section_types: SectionTypes) -> Manifest:
    """Loads and checks a bundle's manifest; every refusal is one line that says what to do."""
    path = Path(bundle) / MANIFEST_NAME
    if not Path(bundle).is_dir():
        raise SRError(f"bundle {bundle} does not exist (build one with `sr-export build`)")
    if links := sorted(entry.name for entry in os.scandir(bundle) if entry.is_symlink()):
        raise SRError(f"bundle {bundle} holds the symbolic link {links[0]}; a bundle's files are its own, rebuild it")
    if not path.is_file():
        raise SRError(f"{bundle} is not a complete bundle: {MANIFEST_NAME} is missing (an interrupted build?); rebuild it")
    text = read_text(path, "bundle manifest", MAX_MANIFEST_BYTES)
    data = parse_json(text, f"bundle manifest {path}")
    if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
        raise SRError(f"{path} is not an sr-export bundle manifest")
    if data.get("format_version") != FORMAT_VERSION or data.get("tool_version") != tool_version:
        raise SRError(
            f"bundle {bundle} was built by sr-export {data.get('tool_version')} (format {data.get('format_version')}), "
            f"this is sr-export {tool_version} (format {FORMAT_VERSION}); rebuild it with `sr-export build`"
        )
    checksum = data.get(CHECKSUM)
    if not isinstance(checksum, str) or len(checksum) != len(_UNSEALED) or _text_checksum(text) != checksum:
        raise SRError(f"{path} changed since the build (its checksum does not match its text); rebuild the bundle")
    try:
        manifest = parse_manifest(data, section_types)
    except RecordError as err:
        raise SRError(f"{path} is malformed ({err}); rebuild the bundle") from err
    if problem := manifest.pipeline.problem() or manifest.section.problem(manifest.pipeline) or _tensor_problem(manifest):
        raise SRError(f"{path} is malformed ({problem}); rebuild the bundle")
    for owner, record in manifest.all_files():
        if Path(record.file).name != record.file:  # a manifest must not reach outside its bundle
            raise SRError(f"{path}: {owner} names {record.file!r}, which is not a file in the bundle")
        file = Path(bundle) / record.file
        if not file.is_file() or file.stat().st_size != record.size:
            raise SRError(f"bundle {bundle}: {record.file} of {owner} is missing or truncated; rebuild it")
    return manifest


def _tensor_problem(manifest: Manifest) -> str | None:
    for name, graph in manifest.graphs.items():
        for tensor in (*graph.inputs, *graph.outputs):
            if tensor.dtype not in TENSOR_DTYPES:
                return f"graph {name}: {tensor.name} has dtype {tensor.dtype!r}, not one of {', '.join(TENSOR_DTYPES)}"
    return None
