"""report.md (tables), report.json (every sample) and report.png (log-scale bars) of a table7 run."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import BinaryIO

from sr_runtime.images import write_atomically

# Rows measured at GEMM rates further apart than this are flagged: run-to-run noise here is about 5%.
HOST_DRIFT = 1.1


def _fmt(ms: float | None) -> str:
    if ms is None:
        return "–"
    return f"{ms:,.0f}" if ms >= 100 else f"{ms:.1f}"


def _backend_names(methods: list[dict]) -> list[str]:
    names: list[str] = []
    for m in methods:
        for b in m["backends"]:
            label = f"{b['backend']} {b['precision']}"
            if label not in names:
                names.append(label)
    return names


def _by_label(m: dict) -> dict[str, dict]:
    return {f"{b['backend']} {b['precision']}": b for b in m["backends"]}


def render_markdown(data: dict) -> str:
    meta, methods = data["meta"], data["methods"]
    labels = _backend_names(methods)
    lines = [
        "# Table 7 reproduction: runtime and parameters (x4, 128 -> 512, batch 1)",
        "",
        f"{meta['date']} on **{meta['device_name']}** ({meta['device']}, {meta['cpu_count']} cores"
        + (f"; {', '.join(meta['isa'])}" if meta.get("isa") else "")
        + (f" (CPUID hides {', '.join(meta['isa_hidden'])}, which the CPU has: emulated)" if meta.get("isa_hidden") else "")
        + (f"; load average {meta['load_average']:.2f} at the start" if meta.get("load_average") is not None else "")
        + (f"; fp32 GEMM {meta['fp32_gemm_gflops']:.0f} GFLOP/s" if meta.get("fp32_gemm_gflops") else "")
        + "), "
        f"{meta['runs']} timed run(s) after {meta['warmup']} warm-up; sr-export {meta['sr_export']}; "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".",
        "",
        "Times in ms, min / median. Ratio: PyTorch eager median / this backend's median (> 1: faster than eager).",
        "",
        "| method | #params (M) | paper #params (M) | paper A100 ms | "
        + " | ".join(labels) + " |",
        "|---" * (4 + len(labels)) + "|",
    ]
    for m in methods:
        meth = m["method"]
        cells = []
        for label in labels:
            b = _by_label(m).get(label)
            if b is None:
                cells.append("–")
                continue
            e = b["end_to_end"]
            ratio = f" ({b['ratio_to_eager']:.2f}x)" if b.get("ratio_to_eager") else ""
            cells.append(f"{_fmt(e['min_ms'])} / {_fmt(e['median_ms'])}{ratio}")
        params = "not yet reproduced" if m["status"] != "measured" else (f"{m['params_m']:.2f}" if m["params_m"] else "–")
        paper_params = f"{meth['paper_params_m']:.2f}" if meth["paper_params_m"] else "–"
        lines.append(f"| {meth['name']} | {params} | {paper_params} | {_fmt(meth['paper_ms'])} | " + " | ".join(cells) + " |")
    rates = [(f"{m['method']['name']} {b['backend']} {b['precision']}", b["host_gemm_gflops"]) for m in methods for b in m["backends"]
             if b.get("host_gemm_gflops")]
    if rates:
        lowest, highest = min(r for _, r in rates), max(r for _, r in rates)
        lines += ["", "Host speed when each row ran (fp32 GEMM, GFLOP/s): "
                  + ", ".join(f"{name} {rate:.0f}" for name, rate in rates) + "."
                  + (f" **The host's speed changed by {highest / lowest - 1:.0%} during this run**: ratios between "
                     "rows measured at different rates include that change." if highest > HOST_DRIFT * lowest else "")]
    if meta.get("peers_left_out"):
        lines += ["", "OpenVINO not timed in this run (`--quick`: add `--backends ...,openvino-cpu` for it)."]
    failed = [f"{m['method']['name']} on {f}" for m in methods for f in m.get("failures", [])]
    if failed:
        lines += ["", "Not measured (the run failed): " + "; ".join(failed) + "."]
    counted = {m["params_counts"] for m in methods if m["params_counts"]}
    lines += ["", "What #params counts: " + "; ".join(sorted(counted)) + "."]
    weights = {m["weights"] for m in methods if m["weights"]}
    if weights:
        lines.append("Weights: " + ", ".join(sorted(weights)) + " (latency does not depend on weight values).")
    lines += ["", "## Stage breakdown (median ms per call; calls per image in brackets)", ""]
    if not meta.get("stages_timed", True):
        lines.append("Not timed in this run (`--quick`: end to end only).")
    for m in methods:
        for b in m["backends"]:
            stages = ", ".join(
                f"{name} {_fmt(statistics.median(st['samples_ms']))}" + (f" [x{st['per_image']}]" if st["per_image"] != 1 else "")
                for name, st in b["stages"].items()
            )
            if stages:
                lines.append(f"- {m['method']['name']}, {b['backend']} {b['precision']}: {stages}"
                             + (f" ({b['note']})" if b["note"] else ""))
    lines += ["", "## Peak memory (MiB) while running a method", "",
              "Host: the process's peak RSS while the stages and end-to-end runs of that row ran, and what was "
              "resident before (its weights, and whatever the harness still held: PyTorch keeps the models it "
              "exports from); device peak: torch's allocator peak (engines allocate outside it); device in use: "
              "what the GPU held for the process after its runs, by NVML (engines, their arenas and the CUDA "
              "context included). Anonymous: the same without file-backed pages (weights a backend maps from the "
              "bundle's files, which the kernel drops under pressure and reads again), i.e. what the process needs "
              "for itself; its peak is sampled every 20 ms.",
              "", "| method | backend | host peak RSS | resident before | peak - before | anonymous peak | "
              "anonymous before | device peak | device in use |",
              "|---|---|---|---|---|---|---|---|---|"]
    for m in methods:
        for b in m["backends"]:
            peak, before = b["peak_host_mib"], b.get("resident_before_mib")
            added = peak - before if peak is not None and before is not None else None
            lines.append(f"| {m['method']['name']} | {b['backend']} {b['precision']} | {_fmt(peak)} | {_fmt(before)} | "
                         f"{_fmt(added)} | {_fmt(b.get('peak_anonymous_mib'))} | {_fmt(b.get('anonymous_before_mib'))} | "
                         f"{_fmt(b['peak_device_mib'])} | {_fmt(b.get('device_in_use_mib'))} |")
    variants = [(m, b, label, v) for m in methods for b in m["backends"] for label, v in b.get("variants", {}).items()]
    if variants:
        lines += ["", "## Variants: runtime and build options (end to end, min / median ms; ratio: the default run's median / "
                  "this one's; anonymous MiB added: the variant's bundle opened and run, the default's still open)", "",
                  "| method | backend | option | ms | ratio | anonymous MiB added |", "|---|---|---|---|---|---|"]
        for m, b, label, v in variants:
            if not v["samples_ms"]:
                lines.append(f"| {m['method']['name']} | {b['backend']} {b['precision']} | {label} | failed: "
                             f"{v.get('failed', '')} | – | – |")
                continue
            median = statistics.median(v["samples_ms"])
            lines.append(f"| {m['method']['name']} | {b['backend']} {b['precision']} | {label} | "
                         f"{_fmt(min(v['samples_ms']))} / {_fmt(median)} | "
                         f"{b['end_to_end']['median_ms'] / median:.2f}x | {_fmt(v.get('anonymous_added_mib'))} |")
    large = [(m, b) for m in methods for b in m["backends"] if b["large_ms"]]
    if large:
        lines += ["", f"## Large image: 512 -> 2048 with batched tiles (batch {meta['batch_large']})", "",
                  "| method | backend | total ms | tiles | ms per tile |", "|---|---|---|---|---|"]
        for m, b in large:
            lines.append(f"| {m['method']['name']} | {b['backend']} {b['precision']} | {_fmt(b['large_ms'])} | "
                         f"{b['large_tiles']} | {_fmt(b['large_ms'] / max(b['large_tiles'], 1))} |")
    lines.append("")
    return "\n".join(lines)


def render_chart(data: dict, file: BinaryIO) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = data["methods"]
    labels = ["paper (A100)"] + _backend_names(methods)
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(methods)), 5))
    width = 0.8 / len(labels)
    for i, label in enumerate(labels):
        values = []
        for m in methods:
            if label == "paper (A100)":
                values.append(m["method"]["paper_ms"] or 0)
            else:
                b = _by_label(m).get(label)
                values.append(b["end_to_end"]["median_ms"] if b else 0)
        xs = [j + (i - (len(labels) - 1) / 2) * width for j in range(len(methods))]
        bars = ax.bar(xs, [v or float("nan") for v in values], width, label=label)
        for bar, v in zip(bars, values, strict=True):
            if v:
                ax.annotate(_fmt(v), (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom", fontsize=7,
                            rotation=90)
    ax.set_yscale("log")
    ax.set_xticks(range(len(methods)), [m["method"]["name"] for m in methods], rotation=30, ha="right")
    ax.set_ylabel("ms per 128 -> 512 image (log)")
    meta = data["meta"]
    ax.set_title(f"x4 128 -> 512, batch 1: paper (A100) vs {meta['device_name']}")
    ax.legend(fontsize=8)
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(file, dpi=120, format="png")
    plt.close(fig)


def write_report(data: dict, folder: Path) -> list[Path]:
    """Each file atomically: a reader, or a run cut short while rewriting the report, sees it whole."""
    paths = [folder / "report.md", folder / "report.json", folder / "report.png"]
    write_atomically(paths[0], lambda file: file.write(render_markdown(data).encode()))
    write_atomically(paths[1], lambda file: file.write(json.dumps(data, indent=1).encode()))
    write_atomically(paths[2], lambda file: render_chart(data, file))
    return paths
