"""A scale-out worker: a long-lived Ray actor (one per ``--workers``, in Ray Data's actor pool) that opens
the bundle once and upscales a stream of images, file to file. Every image comes back as a row with its
outcome, so a bad image is a row, never an exception that would stop the job; a worker whose process dies
is restarted by Ray and its image retried (``ray_job`` configures how often)."""

from __future__ import annotations

import os
import pickle
import signal
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..backends.base import RuntimeOptions
from ..family import TileProgress
from ..resources import memory_limit
from .image_file import failure_of, one_line, upscale_file

# A fault drill for tests and cluster rehearsals: a path. The first worker that has upscaled an image while
# the path does not exist creates it and kills its own process before writing the image, once per path.
FAULT_DRILL = "SR_EXPORT_FAULT_DRILL"


@dataclass(frozen=True)
class WorkerSettings:
    bundle: Path
    verify: bool  # check the bundle files' sha256 when a worker opens it
    workers: int  # workers in the job: they may share a node's memory
    cpus: float  # CPUs Ray reserves per worker; also ONNX Runtime's intra-op threads
    gpus: float  # GPUs Ray reserves per worker
    max_memory_gib: float | None  # one image's limit; None: a share of the node's available memory
    cuda_graph: bool = False  # GPU bundles: replay the engine calls as CUDA graphs


def _workers_on_this_node(settings: WorkerSettings) -> int:
    """How many of the job's workers Ray can place on this worker's node: they share its memory."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    resources = next((n["Resources"] for n in ray.nodes() if n["NodeID"] == node), {})
    fits = resources.get("GPU", 0) / settings.gpus if settings.gpus else resources.get("CPU", 1) / settings.cpus
    return max(1, min(settings.workers, int(fits)))


def _drill() -> None:
    marker = os.environ.get(FAULT_DRILL)
    if not marker:
        return
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


class UpscaleWorker:
    """Ray Data's ``map_batches`` callable: rows of ``source``, ``target`` and ``options`` (the image's
    family options, pickled) in, rows of ``source``, ``target``, ``reason`` ("" when it worked),
    ``seconds``, ``worker`` and ``node`` out."""

    def __init__(self, settings: WorkerSettings):
        import ray

        from ..pipeline import Upscaler

        threads = max(1, int(settings.cpus))
        self._upscaler = Upscaler.from_bundle(settings.bundle, options=RuntimeOptions(threads=threads, cuda_graph=settings.cuda_graph),
                                              verify=settings.verify)
        if settings.max_memory_gib is not None:
            self._memory_limit = memory_limit(settings.max_memory_gib)
        else:
            self._memory_limit = memory_limit(None) // _workers_on_this_node(settings)
        self._worker = ray.get_runtime_context().get_actor_id()[:8]
        self._node = ray.util.get_node_ip_address()

    def _run(self, options: dict[str, Any], pixels: np.ndarray, on_tiles_done: TileProgress | None) -> np.ndarray:
        result = self._upscaler.upscale(pixels, on_tiles_done, **options)
        _drill()
        return result

    def _one(self, source: Path, target: Path, options: dict[str, Any]) -> str:
        run = partial(self._run, options)
        cost = partial(self._upscaler.cost, **options)
        try:
            reason = failure_of(source, partial(upscale_file, run, cost, source, target,
                                                self._memory_limit))
        except Exception as err:  # a bug must not end a long job: the image is failed, with the error's type
            reason = one_line(source, RuntimeError(f"unexpected {type(err).__name__}: {err}"))
        return reason or ""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        reasons, seconds = [], []
        for source, target, options in zip(batch["source"], batch["target"], batch["options"], strict=True):
            start = time.perf_counter()
            reasons.append(self._one(Path(source), Path(target), pickle.loads(options)))
            seconds.append(time.perf_counter() - start)
        count = len(reasons)
        return {"source": batch["source"], "target": batch["target"], "reason": np.asarray(reasons, dtype=object),
                "seconds": np.asarray(seconds), "worker": np.asarray([self._worker] * count, dtype=object),
                "node": np.asarray([self._node] * count, dtype=object)}
