"""OpenVINO on the CPU: the bundle's plain-attention ONNX graphs, compiled when the bundle is opened.

OpenVINO computes a bf16 bundle in bfloat16 where the CPU has bf16 instructions (AVX-512 BF16, AMX),
with its tensors in and out in fp32; elsewhere it computes it in fp32.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import openvino as ov

from ..errors import SRError
from ..manifest import GraphInfo, Manifest
from ..precision import Precision
from .base import REBUILD_HINT, CpuBackend, EngineSession, EngineTensor, first_line

log = logging.getLogger(__name__)

DEVICE = "CPU"
# OpenVINO's inference precision for each bundle precision. It is always given: OpenVINO's own default is
# bf16 wherever the CPU has it, which would make an fp32 bundle compute in bf16.
INFERENCE_PRECISIONS = {Precision.FP32: "f32", Precision.BF16: "bf16"}


def computes_bf16(core: ov.Core | None = None) -> bool:
    """Whether OpenVINO has bf16 kernels on this CPU (it asks CPUID, as its kernels do)."""
    return "BF16" in (core or ov.Core()).get_property(DEVICE, "OPTIMIZATION_CAPABILITIES")


def _ports(ports, declared: set[str]) -> dict[str, EngineTensor]:
    """Each port under its declared name where it has one (OpenVINO gives a port every name its tensor has in the
    graph), with its dtype and shape."""
    return {next((n for n in sorted(p.get_names()) if n in declared), p.any_name):
            (np.dtype(p.get_element_type().to_dtype()),
             [d.get_length() if d.is_static else None for d in p.get_partial_shape()])
            for p in ports}


class OpenVinoSession(EngineSession):
    def __init__(self, name: str, info: GraphInfo, compiled: ov.CompiledModel):
        super().__init__(name, info)
        self.check_io(_ports(compiled.inputs, {t.name for t in info.inputs}),
                      _ports(compiled.outputs, {t.name for t in info.outputs}))
        self.request = compiled.create_infer_request()

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            results = self.request.infer(self.host_inputs(inputs))  # copies the outputs out of the request
        except RuntimeError as err:  # OpenVINO's errors: out of memory, a bad input
            raise SRError(f"engine {self.info.file} failed ({first_line(err)})") from err
        return {t.name: np.asarray(results[t.name]) for t in self.info.outputs}


class OpenVinoCpuBackend(CpuBackend):
    name = "openvino-cpu"

    def check(self, manifest: Manifest) -> None:
        super().check(manifest)
        if manifest.precision not in INFERENCE_PRECISIONS:
            raise SRError(f"an openvino-cpu bundle is fp32 or bf16, this one says {manifest.precision.value}; {REBUILD_HINT}")

    def open(self, bundle: Path, manifest: Manifest) -> dict[str, EngineSession]:
        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": INFERENCE_PRECISIONS[manifest.precision]}
        if self.options.threads:
            config["INFERENCE_NUM_THREADS"] = self.options.threads
        if manifest.precision is Precision.BF16 and not computes_bf16(core):
            log.warning("this CPU has no bf16 instructions (AVX-512 BF16, AMX): OpenVINO computes the bf16 bundle "
                        "in fp32, slower than an onnxruntime-cpu bundle")
        sessions: dict[str, EngineSession] = {}
        for name, info in manifest.graphs.items():
            try:
                compiled = core.compile_model(str(bundle / info.file), DEVICE, config)
            except RuntimeError as err:  # OpenVINO raises RuntimeError for unreadable or unsupported graphs
                raise SRError(f"OpenVINO {ov.__version__} cannot load {info.file} ({first_line(err)}); {REBUILD_HINT}") from err
            sessions[name] = OpenVinoSession(name, info, compiled)
        return sessions
