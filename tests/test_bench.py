"""``sr-export bench table7`` on tiny checkpoints: the three outputs and what they must hold."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import needs_openvino

from sr_export.bench.engines import Variant, bench_variants
from sr_export.bench.family import Runner, TorchMode, VariantRun
from sr_export.bench.table7 import (
    PAPER_ROWS,
    STAGES_VIA_HOST,
    BenchSettings,
    planned_jobs,
    row_note,
    run_table7,
    table_rows,
)
from sr_export.builders.backends import BACKENDS
from sr_export.cli import main
from sr_export.families import FAMILIES
from sr_runtime.backends.base import RuntimeOptions
from sr_runtime.precision import Precision


@pytest.mark.slow
def test_table7_writes_the_three_reports(tmp_path, tiny_checkpoints):
    sd, pth, yaml = tiny_checkpoints
    report = tmp_path / "report"
    result = CliRunner().invoke(main, [
        "bench", "table7", "--runs", "2", "--warmup", "0", "--methods", "InvSR-1", "--methods", "InvSR-3,SeeSR-50",
        "--backends", "eager,onnxruntime-cpu", "--sd-turbo", str(sd), "--noise-predictor", str(pth),
        "--noise-predictor-config", str(yaml), "--report", str(report),
    ])
    assert result.exit_code == 0, result.output
    assert "the cache holds" in result.output.splitlines()[-1]  # the bundles it built stay there: how to free them
    data = json.loads((report / "report.json").read_text())
    rows = {m["method"]["name"]: m for m in data["methods"]}
    assert set(rows) == {"InvSR-1", "InvSR-3", "SeeSR-50"}
    for b in rows["InvSR-1"]["backends"]:
        assert 0 < b["anonymous_before_mib"] <= b["peak_anonymous_mib"] <= b["peak_host_mib"]
    assert rows["SeeSR-50"]["status"] == "not yet reproduced" and rows["SeeSR-50"]["backends"] == []
    for name in ("InvSR-1", "InvSR-3"):
        backends = {b["backend"]: b for b in rows[name]["backends"]}
        assert set(backends) == {"eager", "onnxruntime-cpu"}
        for b in backends.values():
            assert len(b["end_to_end"]["samples_ms"]) == 2 and b["end_to_end"]["min_ms"] > 0
            assert set(b["stages"]) == {"VAE encoder", "noise predictor", "UNet step", "VAE decoder"}
        assert backends["eager"]["ratio_to_eager"] == 1.0
        assert backends["onnxruntime-cpu"]["stages"]["UNet step"]["per_image"] == int(name[-1])
    # the tiny noise predictor, counted the paper's way
    assert 0 < rows["InvSR-1"]["params_m"] < 1 and "noise predictor" in rows["InvSR-1"]["params_counts"]
    md = (report / "report.md").read_text()
    assert "| SeeSR-50 | not yet reproduced |" in md and "| InvSR-1 |" in md and "117" in md
    assert (report / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_paper_rows_are_all_listed_and_the_families_claim_theirs():
    names = [m.name for m in PAPER_ROWS]
    assert names[:5] == ["InvSR-1", "InvSR-3", "InvSR-5", "RealESRGAN", "BSRGAN"]
    assert {"ResShift-4", "SinSR-1", "OSEDiff-1", "StableSR-50", "DiffBIR-50", "SeeSR-50"} <= set(names)
    rows = {m.name: m for m in table_rows({f.name: f.bench({o.name: None for o in f.bench_options}, print)
                                            for f in FAMILIES.values()})}
    assert (rows["InvSR-3"].family, rows["InvSR-3"].steps, rows["InvSR-3"].paper_params_m) == ("invsr", 3, 33.84)
    assert (rows["BSRGAN"].family, rows["BSRGAN"].paper_ms) == ("rrdbnet", 65)
    assert (rows["SinSR-1"].family, rows["SinSR-1"].steps) == ("resshift", 1)
    assert (rows["OSEDiff-1"].family, rows["OSEDiff-1"].steps, rows["OSEDiff-1"].paper_params_m) == ("osediff", 1, 8.50)
    assert rows["SeeSR-50"].family is None


def test_unknown_methods_are_refused():
    result = CliRunner().invoke(main, ["bench", "table7", "--methods", "Foo-9"])
    assert result.exit_code == 1 and "unknown method" in result.output


@pytest.mark.slow
def test_quick_times_end_to_end_only(tmp_path, tiny_checkpoints):
    sd, pth, yaml = tiny_checkpoints
    report = tmp_path / "report"
    result = CliRunner().invoke(main, [
        "bench", "table7", "--quick", "--methods", "InvSR-1", "--backends", "onnxruntime-cpu", "--sd-turbo", str(sd),
        "--noise-predictor", str(pth), "--noise-predictor-config", str(yaml), "--report", str(report),
    ])
    assert result.exit_code == 0, result.output
    data = json.loads((report / "report.json").read_text())
    (backend,) = data["methods"][0]["backends"]
    assert len(backend["end_to_end"]["samples_ms"]) == 1 and backend["stages"] == {}
    assert data["meta"]["stages_timed"] is False and data["meta"]["fp32_gemm_gflops"] > 0
    assert data["meta"]["peers_left_out"] is False  # --backends was given
    assert backend["host_gemm_gflops"] > 0  # the host's speed when this row ran
    md = (report / "report.md").read_text()
    assert "Not timed in this run (`--quick`" in md and "GFLOP/s" in md and "OpenVINO not timed" not in md
    assert "Host speed when each row ran" in md and "InvSR-1 onnxruntime-cpu fp32" in md


def _bench_family(name: str):
    return FAMILIES[name].bench({o.name: None for o in FAMILIES[name].bench_options}, print)


def test_quick_leaves_openvino_out_unless_asked():
    settings = BenchSettings(peers=False)
    families = {"invsr": _bench_family("invsr")}
    labels = {job.backend for job in planned_jobs(families, settings)}
    assert labels == {"eager", "compile", "onnxruntime-cpu"}
    asked = {job.backend for job in planned_jobs(families, replace(settings, backends=("eager", "openvino-cpu")))}
    assert asked == {"eager", "openvino-cpu"}
    assert "openvino-cpu" in {job.backend for job in planned_jobs(families, BenchSettings())} or \
        BACKENDS["openvino-cpu"].problem() is not None


@needs_openvino
def test_openvino_is_timed_in_bf16_where_the_cpu_has_it_except_for_resshift():
    from sr_runtime.backends.openvino import computes_bf16

    def openvino_rows(name: str) -> set[Precision]:
        return {p for b, p in _bench_family(name).backends("cpu") if b is BACKENDS["openvino-cpu"]}

    expected = {Precision.FP32, Precision.BF16} if computes_bf16() else {Precision.FP32}
    assert openvino_rows("invsr") == openvino_rows("rrdbnet") == openvino_rows("s3diff") == expected
    assert openvino_rows("resshift") == {Precision.FP32}  # its bf16 build is refused


def test_pytorch_rows_run_at_each_familys_official_precision_on_the_gpu():
    """fp16 on the GPU as the paper runs InvSR; S3Diff's official code runs fp32 (its reference has no fp16)."""
    def torch_rows(name: str, device: str) -> set[tuple[str, Precision]]:
        return {(b.value, p) for b, p in _bench_family(name).backends(device) if isinstance(b, TorchMode)}

    assert torch_rows("invsr", "cuda") == {("eager", Precision.FP16), ("compile", Precision.FP16)}
    assert torch_rows("s3diff", "cuda") == torch_rows("s3diff", "cpu") == {("eager", Precision.FP32),
                                                                         ("compile", Precision.FP32)}


@pytest.mark.slow
def test_each_job_reports_in_the_order_the_backends_are_named(tiny_checkpoints):
    """Backend by backend as ``--backends`` names them, and the results so far after each job: a run cut
    short keeps whole columns."""
    sd, pth, yaml = tiny_checkpoints
    options = {"sd_turbo": sd, "noise_predictor": pth, "noise_predictor_config": yaml}
    families = {"invsr": FAMILIES["invsr"].bench(options, print)}
    settings = BenchSettings(runs=1, warmup=0, stages=False, methods=("InvSR-1", "InvSR-3"),
                             backends=("onnxruntime-cpu", "eager"))
    assert [(j.method.name, j.backend) for j in planned_jobs(families, settings)] == [
        ("InvSR-1", "onnxruntime-cpu"), ("InvSR-3", "onnxruntime-cpu"), ("InvSR-1", "eager"), ("InvSR-3", "eager")]
    settings = replace(settings, methods=("InvSR-1",))
    partial = []
    final = run_table7(families, {"invsr": options}, settings, report=lambda message: None,
                       on_job_done=lambda data: partial.append([b["backend"] for b in data["methods"][0]["backends"]]))
    assert partial == [["onnxruntime-cpu"], ["onnxruntime-cpu", "eager"]]
    assert final["methods"][0]["backends"][0]["ratio_to_eager"] > 0


@pytest.mark.slow
def test_a_runtime_variant_opens_after_the_default_run_is_measured():
    """Its engines must not count in the default run's memory, and it is timed like the default run."""
    import numpy as np

    from sr_export.bench.table7 import _measure

    events, held, mib = [], [], 2**20

    def build() -> Path:  # what a build holds does not count in what the variant adds; what opening it holds does
        events.append("build")
        held.append(np.ones(200 * mib, dtype=np.uint8))
        return Path("bundle")

    def open_bundle(bundle: Path):
        events.append(f"open {bundle}")
        held.append(np.ones(100 * mib, dtype=np.uint8))
        return lambda: events.append("variant")

    runner = Runner(run=lambda: events.append("run"), variants={"other": VariantRun(build, open_bundle)})
    result = _measure(runner, TorchMode.EAGER, Precision.FP32, BenchSettings(runs=2, warmup=1, stages=False),
                      lambda message: None)
    assert events == ["run"] * 3 + ["build", "open bundle"] + ["variant"] * 3
    assert len(result.variants["other"]["samples_ms"]) == 2 and result.device_in_use_mib is None
    assert 95 <= result.variants["other"]["anonymous_added_mib"] < 190
    events.clear()
    _measure(runner, TorchMode.EAGER, Precision.FP32, BenchSettings(runs=1, warmup=0, stages=False, variants=False),
             lambda message: None)
    assert events == ["run"]  # --quick times no variants

    def unsupported():
        raise RuntimeError("this build has no such option\nmore detail")

    runner.variants = {"missing": VariantRun(unsupported, open_bundle), **runner.variants}
    result = _measure(runner, TorchMode.EAGER, Precision.FP32, BenchSettings(runs=1, warmup=0, stages=False),
                      lambda message: None)
    assert result.variants["missing"] == {"samples_ms": [], "failed": "this build has no such option"}
    assert len(result.variants["other"]["samples_ms"]) == 1  # one failing option costs the others nothing


def _backend_row(name, median, rate=None, **more):
    return {"backend": name, "precision": "fp32", "end_to_end": {"samples_ms": [median], "min_ms": median,
            "median_ms": median}, "ratio_to_eager": None, "stages": {}, "peak_host_mib": None,
            "resident_before_mib": None, "peak_device_mib": None, "large_ms": None, "note": "",
            "host_gemm_gflops": rate, **more}


METHOD = {"method": {"name": "RealESRGAN", "paper_ms": 65, "paper_params_m": 16.7}, "params_m": 16.7,
          "params_counts": "the whole RRDBNet", "weights": "random", "status": "measured", "failures": []}
META = {"date": "d", "device": "cpu", "device_name": "cpu", "isa": [], "fp32_gemm_gflops": 150, "cpu_count": 2,
        "load_average": 0, "versions": {}, "sr_export": "0", "runs": 1, "warmup": 1, "stages_timed": False,
        "batch_large": 4, "shape": "x4"}


def test_runtime_options_and_device_memory_are_reported(tmp_path):
    from sr_export.bench.report import write_report

    engine = _backend_row("onnxruntime-cuda", 10.0, device_in_use_mib=1536.0,
                          variants={"CUDA graphs": {"samples_ms": [4.0, 5.0, 6.0], "anonymous_added_mib": 120.0},
                                    "NHWC": {"samples_ms": [], "failed": "no such option"}})
    write_report({"meta": {**META, "device": "cuda"}, "methods": [{**METHOD, "backends": [engine]}]}, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "| RealESRGAN | onnxruntime-cuda fp32 | CUDA graphs | 4.0 / 5.0 | 2.00x | 120 |" in md
    assert "| RealESRGAN | onnxruntime-cuda fp32 | NHWC | failed: no such option | – | – |" in md
    assert "| 1,536 |" in md
    assert not list(tmp_path.glob(".*"))  # each file written whole, under its final name


def test_the_anonymous_peak_counts_memory_the_process_allocates_but_not_a_file_it_maps(tmp_path):
    import mmap

    import numpy as np

    from sr_export.bench.measure import anonymous_peak, host_resident_mib

    mib = 2**20
    with anonymous_peak() as allocated:
        buffer = np.ones(200 * mib, dtype=np.uint8)  # touched: resident
        time.sleep(0.2)
        del buffer
    assert allocated.peak_mib - allocated.before_mib >= 190

    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\x01" * (200 * mib))
    with open(weights, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        before = host_resident_mib()
        with anonymous_peak() as mapping:
            assert sum(mapped[i] for i in range(0, len(mapped), 4096)) == 200 * mib // 4096  # every page read in
            time.sleep(0.1)
        assert host_resident_mib() - before >= 190 and mapping.peak_mib - mapping.before_mib < 50


def test_the_report_says_when_cpuid_hides_instruction_sets():
    from sr_export.bench.report import render_markdown

    header = render_markdown({"meta": {**META, "isa": ["avx2", "fma"], "isa_hidden": ["avx512f"]}, "methods": []})
    assert "; avx2, fma (CPUID hides avx512f, which the CPU has: emulated)" in header
    assert "CPUID hides" not in render_markdown({"meta": {**META, "isa": ["avx2"], "isa_hidden": []}, "methods": []})


def test_a_drifting_host_is_flagged(tmp_path):
    from sr_export.bench.report import write_report

    steady = {**METHOD, "backends": [_backend_row("eager", 5000, 124), _backend_row("onnxruntime-cpu", 4000, 130)]}
    drifted = {**METHOD, "backends": [_backend_row("eager", 5000, 124), _backend_row("onnxruntime-cpu", 4000, 178)]}
    for name, row, flagged in (("steady", steady, False), ("drifted", drifted, True)):
        write_report({"meta": META, "methods": [row]}, tmp_path / name)
        md = (tmp_path / name / "report.md").read_text()
        assert "RealESRGAN eager fp32 124, RealESRGAN onnxruntime-cpu fp32" in md
        assert ("changed by 44%" in md) is flagged


def test_a_row_says_its_stages_went_through_host_arrays_only_for_an_engine_on_a_gpu():
    runner, large = Runner(run=lambda: None), Runner(run=lambda: None, note="large image in one call, untiled")
    assert row_note(runner, BACKENDS["onnxruntime-cuda"], True) == STAGES_VIA_HOST
    assert row_note(large, BACKENDS["tensorrt"], True) == f"large image in one call, untiled, {STAGES_VIA_HOST}"
    assert row_note(runner, BACKENDS["onnxruntime-cuda"], False) == ""  # --quick: no stages timed
    for host in (BACKENDS["onnxruntime-cpu"], BACKENDS["openvino-cpu"], TorchMode.EAGER):
        assert row_note(runner, host, True) == ""
    assert row_note(large, TorchMode.EAGER, True) == "large image in one call, untiled"


def test_engine_rows_time_their_variants():
    graphs = RuntimeOptions(cuda_graph=True)
    assert bench_variants(BACKENDS["onnxruntime-cuda"]) == {
        "CUDA graphs": Variant(graphs), "GroupNorm unfused": Variant(fused_group_norm=False),
        "GroupNorm unfused, CUDA graphs": Variant(graphs, fused_group_norm=False)}
    assert bench_variants(BACKENDS["tensorrt"]) == {"CUDA graphs": Variant(graphs)}  # builds no GroupNorm fusion
    assert bench_variants(BACKENDS["onnxruntime-cpu"]) == {"optimised for this CPU": Variant(cpu_offline=True)}
    assert bench_variants(BACKENDS["openvino-cpu"]) == {}


def test_params_only_gives_the_column_from_the_architectures_without_loading_anything(tmp_path, monkeypatch):
    # An empty cache stays empty: no checkpoint is written, no bundle built.
    monkeypatch.setenv("SR_EXPORT_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(main, ["bench", "table7", "--params-only", "--methods", "OSEDiff-1,S3Diff-1,InvSR-1,"
                                       "SeeSR-50", "--report", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    entries = {e["method"]: e for e in json.loads((tmp_path / "report" / "params.json").read_text())}
    assert entries["OSEDiff-1"]["paper_params_m"] == 8.50 and round(entries["OSEDiff-1"]["params_m"], 2) == 8.49
    assert "4.44 M of it run at inference" in entries["OSEDiff-1"]["counts"]
    assert round(entries["S3Diff-1"]["params_m"], 2) == 34.48 and round(entries["InvSR-1"]["params_m"], 2) == 33.84
    assert entries["SeeSR-50"]["params_m"] is None and "| SeeSR-50 |  |  | not yet reproduced |" in result.output
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.onnx"))
