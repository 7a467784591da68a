"""The Ray side of a scale-out run: a Ray session (a local one started for the run, or an existing cluster
joined) and the Ray Data pipeline, one row per image through a fixed pool of ``UpscaleWorker`` actors.

Fault tolerance is Ray's, configured here: a worker whose process dies is restarted (``max_restarts``,
without limit) and the image it had is retried on it (``max_task_retries``); an image that has killed its
worker ``1 + MAX_TASK_RETRIES`` times is dropped by Ray Data (``max_errored_blocks``) instead of failing the
job, and the driver records it as failed. One image per block and per actor call, so a retry or a failure
concerns that image only.
"""

from __future__ import annotations

import gc
import logging
import pickle
import re
import socket
import traceback
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SRError, raise_on_sigterm
from ..images import OutputFile
from .summary import Outcome
from .worker import UpscaleWorker, WorkerSettings

MAX_TASK_RETRIES = 2


@dataclass(frozen=True)
class Cluster:
    workers: int
    address: str | None  # None: start a local Ray for the run, sized for the workers
    cpus_per_worker: float
    gpus_per_worker: float


@dataclass(frozen=True)
class ImageTask:
    source: Path
    target: Path
    options: dict[str, Any]  # the family options for this image (Upscaler.upscale's keywords)

    @property
    def files(self) -> list[Path]:
        """What the task writes besides its output (per-image files such as InvSR's steps map)."""
        return [value.path for value in self.options.values() if isinstance(value, OutputFile)]


def require_ray() -> Any:
    """The ray module; without the [ray] extra, one line saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401 (the pipeline's half of the extra)
    except ImportError as err:
        raise SRError(f"--workers runs on Ray, which is not installed here ({err}); pip install \"sr-export[ray]\"") from None
    return ray


def _check_room(ray: Any, cluster: Cluster) -> None:
    """A pool that cannot be placed would wait forever: say what is missing instead."""
    have = ray.cluster_resources()
    for resource, each in (("CPU", cluster.cpus_per_worker), ("GPU", cluster.gpus_per_worker)):
        if each and have.get(resource, 0) < cluster.workers * each:
            raise SRError(f"{cluster.workers} workers need {cluster.workers * each:g} {resource}s, the Ray cluster has "
                          f"{have.get(resource, 0):g}; ask for fewer workers or fewer {resource}s per worker")


def _check_reachable(address: str) -> None:
    """Ray retries a HOST:PORT where nothing listens for ever: one quick connection first."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # "auto" and ray:// addresses fail fast by themselves
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as err:
        raise SRError(f"cannot join Ray at {address}: {err.strerror or err}; is the cluster up (ray start --head)?") from None


@contextmanager
def ray_session(cluster: Cluster) -> Iterator[None]:
    """Ray for the run: started (or joined) and shut down here, unless this process is connected already
    (a Python caller that manages its own Ray session keeps it)."""
    ray = require_ray()
    if ray.is_initialized():
        _check_room(ray, cluster)
        yield
        return
    try:
        if cluster.address:
            _check_reachable(cluster.address)
            ray.init(address=cluster.address, logging_level=logging.WARNING)
        else:
            ray.init(num_cpus=cluster.workers * cluster.cpus_per_worker, include_dashboard=False,
                     logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise SRError(f"cannot start or join Ray{f' at {cluster.address}' if cluster.address else ''}: "
                      f"{' '.join(str(err).split())}") from None
    try:
        raise_on_sigterm()  # Ray's start may have taken SIGTERM: a killed run still writes its summary
        _check_room(ray, cluster)
        yield
    except BaseException as err:
        # Ray Data objects of an interrupted run live on in the traceback's frames (an executor caught between
        # its first block and the iterator that would close it). Released now, they shut their tasks down while
        # Ray is up; released after ray.shutdown(), they start a new local Ray to do it, and fail with a traceback.
        traceback.clear_frames(err.__traceback__)
        gc.collect()
        raise
    finally:
        ray.shutdown()


# Ray Data lines the driver says better itself: each block it gives up on, with a traceback (the driver names
# the image in one line), and that its progress bars are off (the driver shows one bar, over images).
_QUIETED = {"ray.data._internal.execution.streaming_executor_state": "Ignoring this exception",
            "ray.data._internal.progress": "Progress bars disabled"}


class _Without(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def _quiet_ray_data() -> None:
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # its plan and per-dataset lines, not our business
    for name, text in _QUIETED.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Without) for f in logger.filters):
            logger.addFilter(_Without(text))


# Ray hands a worker's exception back as text inside its own error (an actor that died in __init__ keeps
# only the formatted traceback), whose last "SRError: ..." line is the user's error.
_USER_ERROR = re.compile(rf"{SRError.__name__}: (.+)")


def _job_error(err: BaseException) -> SRError:
    """A failed job as one line: the user's error (a bundle a worker cannot open) where there is one."""
    if found := _USER_ERROR.findall(str(err)):
        return SRError(f"a worker failed: {found[-1].strip()}")
    lines = str(err).strip().splitlines()
    return SRError(f"the Ray job failed: {type(err).__name__}: {lines[0] if lines else ''} (Ray's logs say more)")


def outcomes(tasks: Sequence[ImageTask], settings: WorkerSettings, cluster: Cluster) -> Iterator[Outcome]:
    """Each image's outcome, in the order they finish; an image Ray gave up on is missing."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the driver shows one bar, over images
    context.max_errored_blocks = -1
    _quiet_ray_data()
    rows = [{"source": str(t.source), "target": str(t.target), "options": pickle.dumps(t.options)} for t in tasks]
    gpus = {"num_gpus": cluster.gpus_per_worker} if cluster.gpus_per_worker else {}
    with warnings.catch_warnings():
        # Ray 2.60 takes max_restarts / max_task_retries only through **ray_remote_args, which it marks as
        # deprecated without a named replacement yet; the [ray] extra stays below the release that drops it.
        warnings.simplefilter("ignore", DeprecationWarning)
        results = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
            UpscaleWorker, fn_constructor_args=(settings,), batch_size=1, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=cluster.workers, max_tasks_in_flight_per_actor=1),
            num_cpus=cluster.cpus_per_worker, max_restarts=-1, max_task_retries=MAX_TASK_RETRIES, **gpus)
    try:
        for row in results.iter_rows():
            yield Outcome.from_row(row)
    except Exception as err:  # Ray raises its own and wrapped user exceptions; the CLI wants one line
        raise _job_error(err) from err
