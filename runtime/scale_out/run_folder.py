"""The output folder of a scale-out run: one run at a time, which outputs earlier runs finished, with which
bundle and options, and the summary of the last run.

An output counts as finished when its file exists: images are renamed into place only when complete. The
run record (``sr-export-run.json``) names the bundle (its manifest's sha256: the manifest records the sha256
of every engine file) and the family options; a run into a folder holding outputs of another bundle or other
options is refused unless it redoes every image, so a folder never mixes two kinds of results.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..bundle_check import sha256_file
from ..errors import SRError
from ..images import write_atomically
from ..manifest import MANIFEST_NAME
from .summary import RunSummary

RECORD_NAME = "sr-export-run.json"
SUMMARY_NAME = "sr-export-summary.json"
LOCK_NAME = ".sr-export-run.lock"
RECORD_FORMAT = "sr-export-run/1"
# write_image's temporary names, ".<name>.<8 hex>.tmp": a killed worker can leave one behind.
_TEMP = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{8}\.tmp$")


@dataclass(frozen=True)
class RunRecord:
    manifest_sha256: str
    bundle: str  # where the bundle was, for messages; the hash is what must match
    options: dict[str, Any]  # the family options, as JSON values

    @classmethod
    def of(cls, bundle: Path, options: Mapping[str, Any]) -> RunRecord:
        jsonable = json.loads(json.dumps(dict(options), default=str, sort_keys=True))
        return cls(sha256_file(bundle / MANIFEST_NAME), str(bundle.resolve()), jsonable)

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

    def _previous(self) -> RunRecord | None:
        if not self.record_path.exists():
            return None
        try:
            data = json.loads(self.record_path.read_text())
            if data.pop("format") != RECORD_FORMAT:
                raise ValueError("unknown format")
            return RunRecord(**data)
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
            raise SRError(f"{self.record_path} is not an sr-export run record ({err}); move it away or give another "
                          "output folder") from None

    def pending(self, targets: Sequence[Path], record: RunRecord, redo: bool) -> list[int]:
        """The indices of ``targets`` still to do. Outputs of another bundle or options are refused unless
        ``redo`` (then every image is done again, and the outputs replaced)."""
        present = {entry.name for entry in os.scandir(self.folder)}
        finished = [i for i, target in enumerate(targets) if target.name in present]
        if redo:
            return list(range(len(targets)))
        previous = self._previous()
        if finished and previous is None:
            raise SRError(f"{self.folder} already holds {len(finished)} of these outputs (e.g. {targets[finished[0]].name}) "
                          f"but no {RECORD_NAME} naming the bundle that made them; pass --redo to replace them, "
                          "or give another output folder")
        if finished and previous is not None and (changes := previous.differences(record)):
            raise SRError(f"{self.folder} holds outputs of another run ({'; '.join(changes)}); pass --redo to "
                          "upscale every image again with this one, or give another output folder")
        done = set(finished)
        return [i for i in range(len(targets)) if i not in done]

    def start(self, targets: Sequence[Path], record: RunRecord, redo: bool) -> None:
        """Before the first image: no temporary file of an image to do left by a killed run; with ``redo``, no
        output of an earlier run (removed before the record changes, so a resumed redo never keeps one); then
        the record."""
        names = {target.name for target in targets}
        for entry in os.scandir(self.folder):
            match = _TEMP.match(entry.name)
            if (match and match["name"] in names) or (redo and entry.name in names):
                Path(entry.path).unlink(missing_ok=True)
        text = json.dumps({"format": RECORD_FORMAT, **asdict(record)}, indent=2) + "\n"
        write_atomically(self.record_path, lambda file: file.write(text.encode()))

    def write_summary(self, summary: RunSummary) -> None:
        text = summary.to_json()
        write_atomically(self.summary_path, lambda file: file.write(text.encode()))
