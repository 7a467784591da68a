"""Small numeric helpers shared by the tests."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from sr_runtime.cpu_target import listed_cpu_features
from sr_runtime.manifest import MANIFEST_NAME, manifest_text

needs_cuda_ep = pytest.mark.skipif("CUDAExecutionProvider" not in ort.get_available_providers(),
                                   reason="needs onnxruntime-gpu's CUDAExecutionProvider (a CUDA machine)")

needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                                    reason="needs openvino (pip install 'sr-export[openvino]')")

REPO = Path(__file__).resolve().parents[1]
ISA_MASK = REPO / "benchmarks" / "isa_mask" / "run.sh"
_CPUINFO = Path("/proc/cpuinfo")
needs_isa_mask = pytest.mark.skipif(
    shutil.which("gcc") is None or "avx512f" not in listed_cpu_features()
    or "cpuid_fault" not in (_CPUINFO.read_text().split() if _CPUINFO.exists() else []),
    reason="benchmarks/isa_mask needs gcc, and an AVX-512 CPU with CPUID faulting to have something to hide")


def run_as_avx2_only(args: list[str], cache: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python args...`` in the repository as on an AVX2-only host (benchmarks/isa_mask), its library built
    under ``cache``."""
    return subprocess.run(["bash", str(ISA_MASK), sys.executable, *args], capture_output=True, text=True, cwd=REPO,
                          env={"PATH": "/usr/bin:/bin", "SR_EXPORT_CACHE": str(cache)}, timeout=timeout)


def make_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth image with some texture (random pixels would make every SR output look alike)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([0.5 + 0.4 * np.sin(x / 7 + c) * np.cos(y / 5 - c) for c in range(3)], axis=-1)
    return np.clip(base + 0.05 * rng.standard_normal(base.shape), 0, 1).astype(np.float32)


def edit_manifest(bundle: Path, edit) -> None:
    """Changes a bundle's manifest as a user who knows its checksum would (``edit(data)`` in place), so the
    checks behind the checksum are reached."""
    data = json.loads((bundle / MANIFEST_NAME).read_text())
    edit(data)
    (bundle / MANIFEST_NAME).write_text(manifest_text(data))


def assert_graphs_match_modules(bundle: Path, chosen, components, sizes) -> None:
    """Each spec's ONNX file in ``bundle`` against its torch module on the spec's fp32 sample inputs (1e-4 relative)."""
    import torch

    from sr_runtime.precision import Precision

    for spec in chosen:
        inputs = spec.sample_inputs(sizes, Precision.FP32)
        with torch.inference_mode():
            want = spec.make_module(components)(*inputs).numpy()
        session = ort.InferenceSession(str(bundle / f"{spec.name}.onnx"), providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {t.name: x.numpy() for t, x in zip(spec.inputs, inputs, strict=True)})
        assert np.abs(got - want).max() <= 1e-4 * max(np.abs(want).max(), 1e-6), spec.name
