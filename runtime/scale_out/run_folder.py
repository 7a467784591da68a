"""The output folder of a scale-out run: one run at a time, which outputs earlier runs finished, with which
bundle and options, and the summary of the last run.

An output counts as finished when its file exists: images are renamed into place only when complete. The
run record (``sr-export-run.json``) names the bundle (its manifest's sha256: the manifest covers every
engine file and itself), the family options, and for each output the input it is made from (its path, size
and modification time), written before any worker starts on it. A run into a folder holding outputs of
another bundle or other options is refused unless it redoes every image and no other output of that kind
stays, so a folder never mixes two kinds of results; an output of the same name made from another image
is never taken for finished.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..bounded_parse import read_json
from ..bundle_check import sha256_file
from ..errors import SRError
from ..images import temp_files, write_atomically
from ..manifest import MANIFEST_NAME
from ..records import RecordError, parse_record
from .summary import RunSummary

if TYPE_CHECKING:
    from .ray_job import ImageTask

RECORD_NAME = "sr-export-run.json"
SUMMARY_NAME = "sr-export-summary.json"
LOCK_NAME = ".sr-export-run.lock"
RECORD_FORMAT = "sr-export-run/2"
# The record names every output's input (about 150 bytes and 4 values each): room for ten million images.
MAX_RECORD_BYTES = 2 * 2**30
MAX_RECORD_VALUES = 50_000_000


def source_identity(source: Path) -> list:
    """What tells an input image from another of the same name: [real path, size, modification time (ns)]."""
    info = source.stat()
    return [os.path.realpath(source), info.st_size, info.st_mtime_ns]


@dataclass(frozen=True)
class RunRecord:
    manifest_sha256: str
    bundle: str  # where the bundle was, for messages; the hash is what must match
    options: dict[str, Any]  # the family options, as JSON values
    outputs: dict[str, list] = field(default_factory=dict)  # output name -> source_identity of its input
    files: dict[str, list] = field(default_factory=dict)  # a per-image file's path -> source_identity of its input

    @classmethod
    def of(cls, bundle: Path, options: Mapping[str, Any]) -> RunRecord:
        jsonable = json.loads(json.dumps(dict(options), default=str, sort_keys=True))
        return cls(sha256_file(bundle / MANIFEST_NAME), str(bundle.resolve()), jsonable)

    def same_kind(self, other: RunRecord) -> bool:
        return not self.differences(other)

    def differences(self, other: RunRecord) -> list[str]:
        """What ``other`` (this run) changes, as "name: before -> now"."""
        changes = [f"bundle: {self.bundle} (manifest sha256 {self.manifest_sha256[:12]}) -> {other.bundle} "
                   f"({other.manifest_sha256[:12]})"] if self.manifest_sha256 != other.manifest_sha256 else []
        for name in sorted(set(self.options) | set(other.options)):
            if self.options.get(name) != other.options.get(name):
                changes.append(f"{name}: {self.options.get(name)} -> {other.options.get(name)}")
        return changes


class RunFolder:
    def __init__(self, folder: Path):
        self.folder = folder
        self.record_path = folder / RECORD_NAME
        self.summary_path = folder / SUMMARY_NAME

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Held for the whole run: a second run into the same folder would redo the same images."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            lock = open(self.folder / LOCK_NAME, "a+")  # closed by the with below
        except OSError as err:
            raise SRError(f"cannot write into the output folder {self.folder}: {err.strerror or err}") from None
        with lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SRError(f"another sr-export run is writing into {self.folder}; wait for it or give another "
                              "output folder") from None
            yield

    def is_run_folder(self) -> bool:
        """Whether a scale-out run has written into this folder."""
        return self.record_path.exists() or (self.folder / LOCK_NAME).exists()

    def _previous(self) -> RunRecord | None:
        if not self.record_path.exists():
            return None
        data = read_json(self.record_path, "the run record", MAX_RECORD_BYTES, MAX_RECORD_VALUES)
        try:
            if not isinstance(data, dict) or data.pop("format", None) != RECORD_FORMAT:
                raise RecordError("not a record of this sr-export version")
            return parse_record(RunRecord, data, "the record")
        except RecordError as err:
            raise SRError(f"{self.record_path} is not an sr-export run record ({err}); move it away or give another "
                          "output folder") from None

    def pending(self, tasks: Sequence[ImageTask], record: RunRecord, redo: bool) -> list[int]:
        """The indices of ``tasks`` still to do. Outputs of another bundle or options are refused unless ``redo``
        (then every image is done again, and the outputs replaced), and so is an output of the same name made
        from another input, and a per-image file (a steps map) already there that no earlier run of this one
        wrote for that image."""
        present = {entry.name for entry in os.scandir(self.folder)}
        finished = [i for i, task in enumerate(tasks) if task.target.name in present]
        previous = self._previous()
        if redo:
            names = {task.target.name for task in tasks}
            if previous is not None and not previous.same_kind(record) and (
                    kept := sorted(n for n in previous.outputs if n in present and n not in names)):
                raise SRError(f"--redo upscales these {len(tasks)} images again, but {self.folder} also holds "
                              f"{len(kept)} outputs of another run ({'; '.join(previous.differences(record))}; e.g. "
                              f"{kept[0]}) that would stay beside them; give another output folder")
            return list(range(len(tasks)))
        if finished and previous is None:
            raise SRError(f"{self.folder} already holds {len(finished)} of these outputs (e.g. "
                          f"{tasks[finished[0]].target.name}) but no {RECORD_NAME} naming the bundle that made them; "
                          "pass --redo to replace them, or give another output folder")
        if finished and previous is not None and (changes := previous.differences(record)):
            raise SRError(f"{self.folder} holds outputs of another run ({'; '.join(changes)}); pass --redo to "
                          "upscale every image again with this one, or give another output folder")
        for i in finished:
            made_from = previous.outputs.get(tasks[i].target.name)
            if made_from != source_identity(tasks[i].source):
                was = f"from {made_from[0]}" if made_from else "by an unknown run"
                raise SRError(f"{tasks[i].target} was made {was}, not from {tasks[i].source} as it is now (another "
                              "image of the same name, or a changed one); pass --redo to upscale it again, or give "
                              "another output folder")
        done = set(finished)
        todo = [i for i in range(len(tasks)) if i not in done]
        for i in todo:
            for file in tasks[i].files:
                ours = previous is not None and previous.files.get(str(file)) == source_identity(tasks[i].source)
                if (file.exists() or file.is_symlink()) and not ours:
                    raise SRError(f"{file} exists and no earlier run into {self.folder} wrote it for "
                                  f"{tasks[i].source}; remove it, pass --redo to replace it, or give another path")
        return todo

    def start(self, tasks: Sequence[ImageTask], record: RunRecord, redo: bool) -> None:
        """Before the first image (``tasks``: those to do): no temporary file of theirs left by a killed run, nor
        a per-image file ``pending`` found to be this run's (a worker never replaces a file); with ``redo``, no
        output of an earlier run under their names (removed before the record changes, so a resumed redo never
        keeps one); then the record, which names the input of every file it will hold."""
        for task in tasks:
            for written in (task.target, *task.files):
                for temp in temp_files(written):
                    Path(temp).unlink(missing_ok=True)
            for file in task.files:
                file.unlink(missing_ok=True)
            if redo:
                task.target.unlink(missing_ok=True)
        previous = self._previous()
        same = previous is not None and previous.same_kind(record)
        present = {entry.name for entry in os.scandir(self.folder)}
        outputs = {name: made_from for name, made_from in (previous.outputs if same else {}).items() if name in present}
        files = {path: made_from for path, made_from in (previous.files if same else {}).items() if Path(path).exists()}
        for task in tasks:
            made_from = source_identity(task.source)
            outputs[task.target.name] = made_from
            files.update({str(file): made_from for file in task.files})
        text = json.dumps({"format": RECORD_FORMAT, **asdict(replace(record, outputs=outputs, files=files))},
                          indent=1) + "\n"
        write_atomically(self.record_path, lambda file: file.write(text.encode()))

    def write_summary(self, summary: RunSummary) -> None:
        text = summary.to_json()
        write_atomically(self.summary_path, lambda file: file.write(text.encode()))
