"""The instruction sets a bundle's CPU kernels see, and benchmarks/isa_mask, which emulates an AVX2-only
host by narrowing what CPUID answers."""

from __future__ import annotations

import json

from helpers import needs_isa_mask, run_as_avx2_only

from sr_runtime import cpu_target


def test_cpu_features_leave_out_what_cpuid_denies_the_process(monkeypatch):
    monkeypatch.setattr(cpu_target, "listed_cpu_features", lambda: ["avx2", "fma", "avx512f", "amx_tile"])
    monkeypatch.setattr(cpu_target, "_cpuid_features", lambda: {"AVX2": True, "FMA3": True, "AVX512F": False})
    assert cpu_target.cpu_features() == ["avx2", "fma", "amx_tile"]  # numpy does not probe AMX: as listed
    monkeypatch.setattr(cpu_target, "_cpuid_features", lambda: {})
    assert cpu_target.cpu_features() == ["avx2", "fma", "avx512f", "amx_tile"]


@needs_isa_mask
def test_the_isa_mask_hides_avx512_from_every_library_of_the_process(tmp_path):
    probe = ("import json, torch; from sr_runtime.cpu_target import cpu_features;"
             "print(json.dumps({'isa': cpu_features(), 'torch': torch.backends.cpu.get_cpu_capability()}))")
    masked = run_as_avx2_only(["-c", probe], tmp_path)
    assert masked.returncode == 0, masked.stderr
    assert json.loads(masked.stdout) == {"isa": ["avx2", "fma"], "torch": "AVX2"}
    assert (tmp_path / "isa_mask" / "avx2_only.so").is_file()
    # A fault that is not CPUID still ends the process as a crash would, after the program's own handler.
    crash = run_as_avx2_only(["-X", "faulthandler", "-c", "import ctypes; ctypes.string_at(0)"], tmp_path)
    assert crash.returncode == -11 and "Fatal Python error: Segmentation fault" in crash.stderr


# The CPU bundles' exactness checks, on the kernels an AVX2-only host runs (ONNX Runtime blocks channels by 8
# there, and its convolutions and Winograd's matrix products take other code paths than with AVX-512).
CHECKS_ON_AVX2 = ["tests/test_cpu_graph.py",
                  "tests/test_build.py::test_bundle_matches_the_reference_on_a_tiled_image",
                  "tests/test_build.py::test_a_bundle_with_every_3x3_convolution_as_winograd_matches_the_reference",
                  "tests/test_rrdbnet.py::test_tiled_bundle_equals_the_module_on_the_whole_image"]


@needs_isa_mask
def test_cpu_bundles_keep_their_bounds_on_avx2_kernels(tmp_path):
    run = run_as_avx2_only(["-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "t"),
                            *CHECKS_ON_AVX2], tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed in " in run.stdout and "skipped" not in run.stdout  # each ran, none skipped on this host
