"""``sr-export bench table7``: the InvSR paper's runtime/params table (x4, 128 -> 512, batch 1),
every backend of this machine side by side, with a stage breakdown, peak memory and tile throughput."""

from __future__ import annotations

import multiprocessing
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace

from sr_runtime.precision import Precision
from sr_runtime.records import json_ready

from ..builders.backends import EngineBackend
from .family import (
    BEYOND_QUICK,
    BenchBackend,
    BenchFamily,
    Method,
    ParamCount,
    Runner,
    TorchMode,
    backend_label,
    backend_named,
)
from .measure import (
    Timing,
    anonymous_peak,
    device_process_mib,
    fp32_gemm_gflops,
    host_peak_mib,
    host_resident_mib,
    machine,
    reset_host_peak,
    time_calls,
)

# Table 7 of the InvSR paper (A100, ms; #params in M as the paper counts it, where known here; InvSR-3/5
# times are not in it). Which rows are measured, and with how many steps, the families say.
PAPER_ROWS: tuple[Method, ...] = (
    Method("InvSR-1", 117, 33.84),
    Method("InvSR-3", None, 33.84),
    Method("InvSR-5", None, 33.84),
    Method("RealESRGAN", 65, 16.70),
    Method("BSRGAN", 65, 16.70),
    Method("ResShift-4", 319, 118.59, steps=4),
    Method("SinSR-1", 138, 118.59, steps=1),
    Method("OSEDiff-1", 176, 8.50, steps=1),
    Method("StableSR-50", 3459, None, steps=50),
    Method("DiffBIR-50", 7937, None, steps=50),
    Method("SeeSR-50", 6438, None, steps=50),
)


def table_rows(families: dict[str, BenchFamily]) -> list[Method]:
    """The paper's rows, those a family measures marked with it, then the rows families add."""
    claimed = {name: (family.name, steps) for family in families.values() for name, steps in family.methods.items()}
    rows = [replace(row, family=claimed[row.name][0], steps=claimed[row.name][1]) if row.name in claimed else row
            for row in PAPER_ROWS]
    paper = {row.name for row in PAPER_ROWS}
    return rows + [Method(name, None, None, family, steps) for name, (family, steps) in claimed.items()
                   if name not in paper]


@dataclass
class BackendResult:
    backend: str
    precision: Precision
    end_to_end: Timing
    stages: dict[str, dict] = field(default_factory=dict)  # name -> {"per_image": n, "samples_ms": [...]}
    peak_host_mib: float | None = None
    resident_before_mib: float | None = None  # process RSS when the timed runs started (weights included)
    peak_anonymous_mib: float | None = None  # the peak of RSS less mapped files (measure.anonymous_peak)
    anonymous_before_mib: float | None = None
    peak_device_mib: float | None = None
    device_in_use_mib: float | None = None  # what the GPU holds for this process after the runs (NVML)
    host_gemm_gflops: float | None = None  # the CPU's fp32 GEMM rate just before this row ran
    large_ms: float | None = None  # one 512 -> 2048 image
    large_tiles: int = 0
    note: str = ""
    # variant label -> {"samples_ms": [...] end to end, "anonymous_added_mib": its bundle opened and run}
    variants: dict[str, dict] = field(default_factory=dict)


@dataclass
class MethodResult:
    method: Method
    params_m: float | None = None
    params_counts: str = ""
    weights: str = ""
    backends: list[BackendResult] = field(default_factory=list)
    status: str = "measured"
    failures: list[str] = field(default_factory=list)  # backends whose measurement failed, and why

    def eager(self) -> BackendResult | None:
        return next((b for b in self.backends if b.backend == TorchMode.EAGER.value), None)


@dataclass
class BenchSettings:
    device: str = "cpu"
    runs: int = 3
    warmup: int = 1
    backends: tuple[str, ...] | None = None  # None: every backend available (BEYOND_QUICK only with ``peers``)
    peers: bool = True  # with ``backends`` None: also the engines BEYOND_QUICK (OpenVINO)
    methods: tuple[str, ...] | None = None
    large: bool = False
    batch: int = 4
    stages: bool = True  # also time each stage on its own (--quick: end to end only)
    variants: bool = True  # also time each engine's variants (bench_variants; not with --quick)


def _sync(device: str):
    if device == "cuda":
        import torch

        return torch.cuda.synchronize
    return lambda: None


def _device_peak_start(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()


def _device_peak_mib(device: str, backend: BenchBackend) -> float | None:
    """torch's allocator sees only torch's memory: engines allocate outside it."""
    if device != "cuda" or not isinstance(backend, TorchMode):
        return None
    import torch

    return torch.cuda.max_memory_allocated() / 2**20


def _first_line(err: Exception) -> str:
    """The first non-empty line of an error's message ("" if it has none): one line for the log and report."""
    return next((line.strip() for line in str(err).splitlines() if line.strip()), "")


# Every family feeds its engine stages numpy arrays: on a GPU, a stage's time includes its copies in and out.
STAGES_VIA_HOST = "stages timed through host arrays"


def row_note(runner: Runner, backend: BenchBackend, stages_timed: bool) -> str:
    """The runner's own note, and for an engine on a GPU whose stages were timed, that they include host copies."""
    on_device = isinstance(backend, EngineBackend) and backend.device != "cpu"
    return ", ".join(filter(None, (runner.note, STAGES_VIA_HOST if stages_timed and on_device else "")))


def _measure(runner: Runner, backend: BenchBackend, precision: Precision, s: BenchSettings, report) -> BackendResult:
    sync = _sync(s.device)
    # A shared host's speed drifts during a run (a 2-core VM moved from 124 to 178 GFLOP/s within one report), so
    # each row records it, before the peak is reset so its buffers do not count.
    gemm = fp32_gemm_gflops() if s.device == "cpu" else None
    # Weights are loaded by now: the peak above this is what running the networks costs.
    reset_host_peak()
    before = host_resident_mib()
    _device_peak_start(s.device)
    stages = {}
    with anonymous_peak() as anonymous:
        for stage in runner.stages if s.stages else ():
            report(f"    stage {stage.name}")
            stages[stage.name] = time_calls(stage.call, sync, s.runs, s.warmup)
        report("    end to end")
        time_calls(runner.run, sync, 0, s.warmup)
        timing = time_calls(runner.run, sync, s.runs, 0)
    result = BackendResult(
        backend_label(backend), precision, timing,
        stages={st.name: {"per_image": st.per_image, "samples_ms": stages[st.name].samples_ms}
                for st in runner.stages if st.name in stages},
        peak_host_mib=host_peak_mib(), resident_before_mib=before, peak_anonymous_mib=anonymous.peak_mib,
        anonymous_before_mib=anonymous.before_mib, peak_device_mib=_device_peak_mib(s.device, backend),
        note=row_note(runner, backend, bool(stages)), host_gemm_gflops=gemm,
    )
    if s.large and runner.large is not None:
        report(f"    512 -> 2048 ({runner.large_tiles} tiles, batch {s.batch})")
        # Warmed up like the small image: a first call also pays for the allocator's first touch of GBs.
        result.large_ms = time_calls(runner.large, sync, 1, s.warmup).samples_ms[0]
        result.large_tiles = runner.large_tiles
    if s.device == "cuda":
        result.device_in_use_mib = device_process_mib()
    for label, variant in runner.variants.items() if s.variants else ():  # last: they count in nothing above
        report(f"    end to end, {label}")
        try:
            bundle = variant.build()
            with anonymous_peak() as anonymous:
                samples = time_calls(variant.open(bundle), sync, s.runs, s.warmup).samples_ms
            result.variants[label] = {"samples_ms": samples, "anonymous_added_mib": anonymous.added_mib}
        except Exception as err:  # an option this runtime build lacks must not cost the row its other results
            reason = _first_line(err) or type(err).__name__
            report(f"    failed: {reason}")
            result.variants[label] = {"samples_ms": [], "failed": reason}
    return result


@dataclass(frozen=True)
class Job:
    family: str
    method: Method
    backend: str  # backend_label
    precision: Precision


def measure_job(job: Job, options: dict, s: BenchSettings) -> tuple[BackendResult, ParamCount, str]:
    """One (row, backend) in a fresh process: its peak memory is its own, not what earlier rows freed."""
    from ..families import FAMILIES

    def report(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    family = FAMILIES[job.family].bench(options, report)
    backend = backend_named(job.backend)
    runner = family.runner(job.method, backend, job.precision, s.device, s.batch)
    return _measure(runner, backend, job.precision, s, report), family.params(job.method), family.weights


def _eta(done: list[tuple[str, float]], remaining: list[Job]) -> str:
    """What is left, from the time jobs of the same family took so far (of any family where none has run)."""
    if not done:
        return "estimating"
    overall = sum(t for _, t in done) / len(done)
    left = 0.0
    for job in remaining:
        same = [t for family, t in done if family == job.family]
        left += sum(same) / len(same) if same else overall
    return f"about {left / 60:.0f} min left"


def asked_rows(families: dict[str, BenchFamily], s: BenchSettings) -> dict[str, Method]:
    return {m.name: m for m in table_rows(families) if s.methods is None or m.name in s.methods}


def planned_jobs(families: dict[str, BenchFamily], s: BenchSettings) -> list[Job]:
    """Every (row, backend) ``s`` asks for, in the order they run: row by row, or backend by backend in
    the order ``--backends`` names them (so that a run cut short has whole columns)."""
    rows = asked_rows(families, s)
    jobs = [Job(name, rows[method], backend_label(backend), precision)
            for name, family in families.items() for method in family.methods if method in rows
            for backend, precision in family.backends(s.device)
            if (backend_label(backend) in s.backends if s.backends is not None
                else s.peers or backend_label(backend) not in BEYOND_QUICK)]
    return jobs if s.backends is None else sorted(jobs, key=lambda job: s.backends.index(job.backend))


def run_table7(families: dict[str, BenchFamily], options: dict[str, dict], s: BenchSettings, report=print,
               on_job_done: Callable[[dict], object] = lambda data: None) -> dict:
    """Every (row, backend) measured in its own process; ``options``: each family's bench options.
    ``on_job_done`` gets the results so far after each (row, backend), so a run cut short keeps them."""
    results = {name: MethodResult(m, status="measured" if m.family in families else "not yet reproduced")
               for name, m in asked_rows(families, s).items()}
    jobs = planned_jobs(families, s)
    meta = _meta(s)
    done: list[tuple[str, float]] = []
    spawn = multiprocessing.get_context("spawn")
    for index, job in enumerate(jobs):
        report(f"[{index + 1}/{len(jobs)}] {job.method.name} on {job.backend} {job.precision.value} "
               f"({_eta(done, jobs[index:])})")
        start = time.perf_counter()
        row = results[job.method.name]
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
            try:
                result, count, row.weights = pool.submit(measure_job, job, options[job.family], s).result()
            except Exception as err:  # one backend failing (a compiler missing, out of memory) must not end the run
                reason = _first_line(err)
                report(f"    failed: {type(err).__name__}: {reason}")
                # Where in the worker it failed, for whoever reads the log (the report keeps one line).
                if err.__cause__ is not None:
                    print(str(err.__cause__).rstrip(), file=sys.stderr, flush=True)
                row.failures.append(f"{job.backend} {job.precision.value}: {type(err).__name__}")
                continue
        row.params_m, row.params_counts = count.millions, count.counts
        row.backends.append(result)
        done.append((job.family, time.perf_counter() - start))
        on_job_done(_results(results, meta))
    return _results(results, meta)


def _results(results: dict[str, MethodResult], meta: dict) -> dict:
    return {"meta": meta, "methods": [_as_dict(r) for r in results.values()]}


def _as_dict(r: MethodResult) -> dict:
    data = json_ready(asdict(r))
    eager = r.eager()
    for b, raw in zip(r.backends, data["backends"], strict=True):
        raw["end_to_end"] = {"samples_ms": b.end_to_end.samples_ms, "min_ms": b.end_to_end.min_ms,
                             "median_ms": b.end_to_end.median_ms}
        raw["ratio_to_eager"] = eager.end_to_end.median_ms / b.end_to_end.median_ms if eager else None
    return data


def _meta(s: BenchSettings) -> dict:
    return {
        **machine(s.device),
        "runs": s.runs,
        "warmup": s.warmup,
        "stages_timed": s.stages,
        "peers_left_out": s.backends is None and not s.peers,
        "batch_large": s.batch,
        "shape": "x4, 1x3x128x128 -> 1x3x512x512, batch 1",
    }
