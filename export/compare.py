"""``sr-export compare``: a bundle's engines against an ONNX Runtime fp32 reference bundle of the same
model, on the same inputs: PSNR per engine call (each fed the reference's own inputs, so errors do not
accumulate) and end to end (the whole chain on the same LR tiles).

PSNR per call is taken over the reference output's range (latents are not images in [0, 1]);
end to end it is the usual one over [0, 1].
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sr_runtime.backends.base import ChainPlan, RuntimeOptions
from sr_runtime.errors import SRError
from sr_runtime.manifest import MANIFEST_NAME, Manifest
from sr_runtime.precision import Precision
from sr_runtime.records import record_dict
from sr_runtime.version import TOOL_VERSION

from .families.base import Options
from .metrics import psnr
from .reporting import Report

REFERENCE_BACKEND = "onnxruntime-cpu"


@dataclass(frozen=True)
class CallResult:
    call: str  # "unet_step[1]" when a graph is called more than once
    output: str
    psnr: float
    max_abs: float


@dataclass(frozen=True)
class Comparison:
    calls: list[CallResult]
    end_to_end: float
    tiles: int

    def lines(self) -> list[str]:
        rows = [f"{'engine call':18s} {'output':12s} {'PSNR dB':>8s} {'max |diff|':>11s}"]
        rows += [f"{c.call:18s} {c.output:12s} {c.psnr:8.2f} {c.max_abs:11.3g}" for c in self.calls]
        rows.append(f"{'end to end':18s} {'image':12s} {self.end_to_end:8.2f}   ({self.tiles} tiles)")
        return rows


def _model_constants(manifest: Manifest) -> dict:
    """What must agree for two bundles to compute the same thing: all but the batch they were built for."""
    pipeline = asdict(manifest.pipeline)
    del pipeline["batch"]
    return {**pipeline, **record_dict(manifest.section)}


def check_same_model(test: Manifest, reference: Manifest) -> None:
    """The reference must run the same model with the same constants, or PSNR measures nothing."""
    a, b = _model_constants(test), _model_constants(reference)
    if differ := sorted(f for f in a.keys() | b.keys() if a.get(f) != b.get(f)):
        raise SRError(
            f"the reference bundle differs from the bundle in {', '.join(differ)}; build it for the same model"
        )
    if _hashes(test) != _hashes(reference):
        raise SRError("the reference bundle was built from other checkpoints than the bundle")


def _hashes(manifest: Manifest) -> dict:
    return {name: record.sha256 for name, record in manifest.checkpoints.items()}


def feeds_for(plan: ChainPlan, sessions, names: tuple[str, ...], seed: int, main: str) -> dict[str, np.ndarray]:
    """Host inputs of one tile batch: the ``main`` feed (the chain's image tiles) in [0, 1] from ``seed``, other feeds
    (the noises) zero, which is the runtime's default (posterior means)."""
    shapes = {}
    for call in plan.calls:
        tensors = {t.name: t for t in sessions[call.graph].info.inputs}
        for tensor, buffer in call.inputs.items():
            shapes.setdefault(buffer, plan.shape(tensors[tensor]))
    rng = np.random.default_rng(seed)
    return {
        name: rng.random(shapes[name], dtype=np.float32) if name == main else np.zeros(shapes[name], np.float32)
        for name in names
    }


def compare_calls(plan: ChainPlan, test_sessions, ref_sessions, feeds) -> list[CallResult]:
    """Every engine call of ``plan``, fed the reference's buffers; the reference's outputs go on."""
    buffers = {**plan.constants, **feeds}
    total = {c.graph: sum(x.graph == c.graph for x in plan.calls) for c in plan.calls}
    seen: dict[str, int] = {}
    results = []
    for call in plan.calls:
        inputs = {tensor: buffers[buffer] for tensor, buffer in call.inputs.items()}
        want = ref_sessions[call.graph].run(inputs)
        got = test_sessions[call.graph].run(inputs)
        index = seen[call.graph] = seen.get(call.graph, -1) + 1
        label = call.graph if total[call.graph] == 1 else f"{call.graph}[{index}]"
        for name, value in want.items():
            value = np.asarray(value, np.float32)
            other = np.asarray(got[name], np.float32)
            peak = max(float(value.max() - value.min()), 1e-6)
            results.append(CallResult(label, name, psnr(other, value, peak), float(np.abs(other - value).max())))
        buffers.update({call.outputs[name]: value for name, value in want.items()})
    return results


def compare_bundles(
    bundle: Path, reference: Path, tiles: int | None = None, seed: int = 0, options: RuntimeOptions | None = None
) -> Comparison:
    from sr_runtime.pipeline import Upscaler

    test = Upscaler.from_bundle(bundle, options=options)
    ref = Upscaler.from_bundle(reference)
    check_same_model(test.manifest, ref.manifest)
    batch = tiles or test.manifest.pipeline.batch
    if not 1 <= batch <= test.manifest.pipeline.batch:
        raise SRError(f"--tiles must be 1-{test.manifest.pipeline.batch} (the bundle's batch), got {batch}")
    family = ref.family
    plan = family.plan(family.default_chain, batch, *family.tile_shape)
    feeds = feeds_for(plan, ref.sessions, family.feeds, seed, family.default_chain.main_feed)
    calls = compare_calls(plan, test.sessions, ref.sessions, feeds)
    arrays = [feeds[name] for name in family.feeds]
    got = np.clip(test.run_tiles(*arrays), 0, 1)
    want = np.clip(ref.run_tiles(*arrays), 0, 1)
    return Comparison(calls, psnr(got, want, 1.0), batch)


def reference_bundle(bundle: Path, options: Options, report: Report = print) -> Path:
    """An onnxruntime-cpu fp32 bundle of ``bundle``'s model, built from the same checkpoints (the ONNX
    export is cached) into the cache, once per model, constants and tile."""
    from sr_runtime.bundle_manifest import read_manifest

    from .builders.bundle_builder import BuildOptions, build_bundle
    from .cache import cache_root
    from .families import family_named

    manifest = read_manifest(bundle, TOOL_VERSION)
    key = json.dumps({"tool": TOOL_VERSION, "checkpoints": _hashes(manifest), "model": _model_constants(manifest),
                      "batch": manifest.pipeline.batch}, sort_keys=True)
    folder = cache_root() / "reference-bundles" / hashlib.sha256(key.encode()).hexdigest()[:24]
    if (folder / MANIFEST_NAME).is_file():
        report(f"reusing the reference bundle {folder}")
        return folder
    source = family_named(manifest.pipeline.family).reference_source(manifest, options, report)
    if _hashes(manifest) != {name: record.sha256 for name, record in source.checkpoints.items()}:
        raise SRError("the checkpoints the bundle was built from have changed since; pass --reference-bundle")
    report(f"building an {REFERENCE_BACKEND} fp32 reference bundle in {folder}")
    p = manifest.pipeline
    opts = BuildOptions(backend=REFERENCE_BACKEND, precision=Precision.FP32, tile=p.tile, batch=p.batch, output=folder)
    return build_bundle(source, opts, report=report)
