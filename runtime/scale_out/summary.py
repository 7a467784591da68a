"""What a scale-out run did: images done, failed (with the one-line reason), skipped, already done by an
earlier run, and the throughput of the run and of each worker; as console lines and as the summary file."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Outcome:
    """One image as a worker returned it."""

    source: Path
    target: Path
    reason: str | None  # None: upscaled and written
    seconds: float  # the worker's time on it
    worker: str  # Ray's actor id (kept across restarts), short
    node: str  # the node's IP address

    @classmethod
    def from_row(cls, row: dict) -> Outcome:
        return cls(Path(row["source"]), Path(row["target"]), row["reason"] or None, float(row["seconds"]),
                   str(row["worker"]), str(row["node"]))


@dataclass
class WorkerStats:
    node: str
    images: int = 0
    busy: float = 0.0  # seconds spent on images


@dataclass
class RunSummary:
    workers: int
    already_done: int  # outputs finished by an earlier run, not redone
    skipped: list[Path] = field(default_factory=list)  # files in the input folders that are not images
    done: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0  # wall time from the first image handed out to the last one back
    per_worker: dict[str, WorkerStats] = field(default_factory=dict)
    interrupted: bool = False

    def add(self, outcome: Outcome) -> None:
        stats = self.per_worker.setdefault(outcome.worker, WorkerStats(outcome.node))
        stats.images += 1
        stats.busy += outcome.seconds
        if outcome.reason is None:
            self.done += 1
        else:
            self.failed.append((outcome.source, outcome.reason))

    def _rate(self, images: int) -> float:
        return images / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        head = (f"{self.done} done, {len(self.failed)} failed, {len(self.skipped)} skipped (not images), "
                f"{self.already_done} already done")
        if self.interrupted:
            head += ", interrupted: run the same command again to do the rest"
        tried = self.done + len(self.failed)
        lines = [head]
        if tried:
            lines.append(f"{tried} images in {self.seconds:.1f} s: {self._rate(tried):.3g} images/s "
                         f"with {self.workers} worker{'s' if self.workers > 1 else ''}")
        for name, stats in sorted(self.per_worker.items(), key=lambda item: -item[1].images):
            busy = 100 * stats.busy / self.seconds if self.seconds > 0 else 0.0
            lines.append(f"  worker {name} on {stats.node}: {stats.images} images, {self._rate(stats.images):.3g} "
                         f"images/s, {stats.busy / stats.images:.2f} s per image, busy {busy:.0f}%")
        return lines

    def to_json(self) -> str:
        tried = self.done + len(self.failed)
        return json.dumps({
            "status": "interrupted" if self.interrupted else "finished",
            "done": self.done,
            "failed": [{"path": str(path), "reason": reason} for path, reason in self.failed],
            "skipped_not_images": [str(path) for path in self.skipped],
            "already_done": self.already_done,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self._rate(tried), 4),
            "workers": [{"worker": name, "node": stats.node, "images": stats.images, "busy_seconds": round(stats.busy, 3),
                         "images_per_second": round(self._rate(stats.images), 4)}
                        for name, stats in sorted(self.per_worker.items())],
        }, indent=2) + "\n"
