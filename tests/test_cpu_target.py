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
