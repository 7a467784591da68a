"""``upscale_on_ray``: a whole scale-out run, resumable. Under the output folder's lock it decides what is
left to do (``run_folder``), writes the run record, streams the images through the Ray workers with a
progress bar, and writes the summary file, also when it is interrupted."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .ray_job import MAX_TASK_RETRIES, Cluster, ImageTask, outcomes, ray_session, require_ray
from .run_folder import RunFolder, RunRecord
from .summary import RunSummary
from .worker import WorkerSettings


def _stream(tasks: Sequence[ImageTask], settings: WorkerSettings, cluster: Cluster, summary: RunSummary,
            report: Callable[[str], None]) -> None:
    from tqdm import tqdm

    back: set[Path] = set()
    with ray_session(cluster), tqdm(total=len(tasks), desc="images", unit="img", file=sys.stderr) as bar:
        start = time.perf_counter()
        try:
            for outcome in outcomes(tasks, settings, cluster):
                back.add(outcome.target)
                summary.add(outcome)
                bar.update()
                if outcome.reason:
                    bar.clear()
                    report(f"error: {outcome.reason}")
        finally:
            summary.seconds = time.perf_counter() - start
    for task in tasks:
        if task.target not in back:
            summary.failed.append((task.source, f"{task.source}: its worker died {1 + MAX_TASK_RETRIES} times "
                                                "upscaling it (a crash, or the machine ran out of memory; Ray's logs "
                                                "say which)"))
            report(f"error: {summary.failed[-1][1]}")


def upscale_on_ray(tasks: Sequence[ImageTask], skipped: Sequence[Path], folder: Path, bundle: Path,
                   options: Mapping[str, Any], cluster: Cluster, settings: WorkerSettings, redo: bool,
                   report: Callable[[str], None]) -> RunSummary:
    """Upscales the ``tasks`` (their targets all in ``folder``) that no earlier run with the same bundle and
    ``options`` finished; ``redo``: all of them, replacing earlier outputs. The summary file is written
    before returning, and before a KeyboardInterrupt goes on."""
    require_ray()  # before the output folder is touched
    run_folder = RunFolder(folder)
    record = RunRecord.of(bundle, options)
    with run_folder.locked():
        todo = [tasks[i] for i in run_folder.pending(tasks, record, redo)]
        summary = RunSummary(cluster.workers, len(tasks) - len(todo), list(skipped))
        run_folder.start(todo, record, redo)
        try:
            if todo:
                _stream(todo, settings, cluster, summary, report)
        except KeyboardInterrupt:
            summary.interrupted = True
            run_folder.write_summary(summary)
            raise
        run_folder.write_summary(summary)
    return summary
