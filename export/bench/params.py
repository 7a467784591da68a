"""``sr-export bench table7 --params-only``: the #params column of Table 7, the paper's figure beside ours, counted
from the released architectures on the meta device (nothing written, loaded, built or timed)."""

from __future__ import annotations

import json
from pathlib import Path

from sr_runtime.images import write_atomically

from .family import BenchFamily, Method


def params_rows(families: dict[str, BenchFamily], rows: list[Method]) -> list[dict]:
    """One entry per row: its name, the paper's figure (M) and ours (M, with what it counts) where a family has it."""
    found = []
    for row in rows:
        entry = {"method": row.name, "paper_params_m": row.paper_params_m, "params_m": None, "counts": None}
        if row.family is not None:
            count = families[row.family].meta_params(row)
            entry.update(params_m=round(count.millions, 4), counts=count.counts)
        found.append(entry)
    return found


def _figure(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def render_markdown(entries: list[dict]) -> str:
    lines = ["# Table 7, #params (M)", "",
             "Counted from the released architectures (the official configs' widths) on the meta device, the way the "
             "paper counts each row; empty where the paper's figure is not known here or no family implements the row.",
             "", "| method | paper | ours | what is counted |", "|---|---|---|---|"]
    lines += [f"| {e['method']} | {_figure(e['paper_params_m'])} | {_figure(e['params_m'])} | "
              f"{e['counts'] or 'not yet reproduced'} |" for e in entries]
    return "\n".join(lines) + "\n"


def write_params_report(entries: list[dict], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "params.md", folder / "params.json"]
    write_atomically(paths[0], lambda file: file.write(render_markdown(entries).encode()))
    write_atomically(paths[1], lambda file: file.write(json.dumps(entries, indent=1).encode()))
    return paths
