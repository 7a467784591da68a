"""``sr-export cache``: entries listed with size and last use, reuse counts as use, ``prune`` removes what no
run used for the given days and what killed writers left, never an entry another process is writing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from sr_export.atomic_folders import folder_lock
from sr_export.cache import COMPLETE, cache_entries, cache_root, cached_folder
from sr_export.cli import main

DAY = 86400


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SR_EXPORT_CACHE", str(tmp_path / "cache"))
    return cache_root()


def _entry(folder: Path, size: int, days_ago: float) -> Path:
    cached_folder(folder, lambda tmp: (tmp / "data.bin").write_bytes(b"x" * size))
    past = time.time() - days_ago * DAY
    os.utime(folder / COMPLETE, (past, past))
    return folder


def _cli(*args: str) -> str:
    result = CliRunner().invoke(main, ["cache", *args])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    return result.output


def test_reuse_counts_as_use_and_prune_removes_only_what_no_run_used_lately(cache):
    old, reused, recent = (_entry(cache / "onnx" / n, s, d) for n, s, d in (("old", 3000, 40), ("reused", 2000, 40),
                                                                             ("recent", 1000, 2)))
    cached_folder(reused, lambda tmp: pytest.fail("an intact entry is not written again"))
    listing = _cli("list")
    assert f"{cache}: 0.00 GB in 3 entries" in listing
    assert listing.index("onnx/old") < listing.index("onnx/recent") < listing.index("onnx/reused")  # oldest use first

    output = _cli("prune")  # 30 days by default
    assert "removed 1 entry" in output and "kept 2 entries" in output
    assert not old.exists() and (reused / "data.bin").read_bytes() == b"x" * 2000 and recent.exists()
    assert "removed 2 entries" in _cli("prune", "--unused-days", "0") and cache_entries() == []


KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from sr_export.cache import cached_folder
def fill(tmp):
    (tmp / "half.bin").write_bytes(b"x" * 100)
    os.kill(os.getpid(), signal.SIGKILL)
cached_folder(Path(sys.argv[1]), fill)
"""


def test_prune_removes_what_a_killed_writer_left_but_not_an_entry_being_written(cache):
    killed = cache / "bench-bundles" / "killed"
    done = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(killed)], capture_output=True, timeout=120)
    assert done.returncode == -9
    [leftover] = cache_entries()
    assert leftover.last_used is None and leftover.folder.name.startswith(".killed.tmp-")
    assert "left by a killed run" in _cli("list")

    busy = _entry(cache / "onnx" / "busy", 10, 40)
    with folder_lock(busy):  # as a build writing it again holds it
        output = _cli("prune")
    assert "skipping onnx/busy: a run is writing it" in output and "removed 1 entry" in output
    assert busy.exists() and not leftover.folder.exists()
