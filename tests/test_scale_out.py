"""``sr-export upscale --workers N`` on Ray: the same outputs as one process, a killed worker retried by
Ray, an interrupted or killed driver resumed without redoing finished files, bad images reported, and
outputs of another bundle or options never mixed in. Two workers of a local Ray on the stand-in bundle."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import make_image
from standin_bundle import write_bundle

from sr_export.cli import main
from sr_runtime.images import read_image, write_image
from sr_runtime.scale_out.run_folder import RECORD_NAME, SUMMARY_NAME
from sr_runtime.scale_out.worker import FAULT_DRILL

ray = pytest.importorskip("ray", reason="the scale-out needs the [ray] extra: pip install -e \".[ray]\"")

OPTIONS = ["--seed", "3", "--color-fix", "wavelet"]  # family options must reach the workers unchanged
WORKERS = ["--workers", "2", "--cpus-per-worker", "1"]
CLI = [sys.executable, "-c", "from sr_export.cli import main; main()"]


def _invoke(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


def _default_sigint() -> None:
    # A child inherits an ignored SIGINT and Python then leaves it ignored: Ray, run in this process by other
    # tests, can leave it so, and the command would never see the Ctrl-C the tests send.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _cli(*args, env: dict | None = None, **popen) -> subprocess.Popen:
    return subprocess.Popen([*CLI, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})}, preexec_fn=_default_sigint, **popen)


def _images(folder: Path, count: int, size: int) -> Path:
    for i in range(count):
        write_image(folder / f"img{i:02d}.png", make_image(size, size + 8, seed=i))
    return folder


def _outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def _summary(folder: Path) -> dict:
    return json.loads((folder / SUMMARY_NAME).read_text())


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return write_bundle(tmp_path_factory.mktemp("scale-out") / "bundle")


@pytest.fixture(scope="module")
def cluster() -> str:
    """One local Ray of two CPUs for the module: in-process runs use it, subprocesses join it."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, bundle, cluster):
    """A folder of good and bad images, upscaled in one process and on two workers."""
    root = tmp_path_factory.mktemp("first-run")
    images = _images(root / "in", 6, 40)
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    write_image(images / "thin.png", np.full((1, 40, 3), 0.5, np.float32))  # too thin for InvSR's padding
    (images / "notes.txt").write_text("not an image")
    single = _invoke("upscale", images, "-o", root / "single", "-e", bundle, *OPTIONS)
    workers = _invoke("upscale", images, "-o", root / "workers", "-e", bundle, *OPTIONS, *WORKERS)
    return root, single, workers


@pytest.mark.slow
def test_two_workers_write_what_one_process_writes(first_run):
    root, (single_code, _), (code, output) = first_run
    assert single_code == code == 1  # the bad images
    assert len(_outputs(root / "single")) == 6 and _outputs(root / "workers") == _outputs(root / "single")
    record = json.loads((root / "workers" / RECORD_NAME).read_text())
    assert record["options"]["seed"] == 3 and record["options"]["color_fix"] == "wavelet"
    assert "6 done, 2 failed, 1 skipped (not images), 0 already done" in output
    assert "images/s with 2 workers" in output and output.count("  worker ") == 2


def test_bad_images_are_reported_in_one_line_and_in_the_summary_file(first_run):
    root, _, (_, output) = first_run
    errors = sorted(line for line in output.splitlines() if line.startswith("error: "))
    assert len(errors) == 2 and "broken.png" in errors[0] and "too small" in errors[1]
    summary = _summary(root / "workers")
    assert summary["status"] == "finished" and summary["done"] == 6
    assert sorted(Path(f["path"]).name for f in summary["failed"]) == ["broken.png", "thin.png"]
    assert all("\n" not in f["reason"] for f in summary["failed"])
    assert [Path(p).name for p in summary["skipped_not_images"]] == ["notes.txt"]
    assert sum(w["images"] for w in summary["workers"]) == 8 and summary["images_per_second"] > 0


def test_a_run_started_again_keeps_what_is_done_and_refuses_other_options(first_run, bundle):
    root, _, _ = first_run
    images, out = root / "in", root / "workers"
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    code, output = _invoke("upscale", images, "-o", out, "-e", bundle, *OPTIONS, *WORKERS)
    assert code == 1 and "0 done, 2 failed, 1 skipped (not images), 6 already done" in output  # bad ones retried
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")} == before
    code, output = _invoke("upscale", images, "-o", out, "-e", bundle, "--seed", "4", *WORKERS)
    error = next(line for line in output.splitlines() if line.startswith("error: "))
    assert code == 1 and "seed: 3 -> 4" in error and "color_fix: wavelet -> None" in error and "--redo" in error
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")} == before


def test_outputs_of_an_unknown_run_are_refused_and_redo_replaces_them(tmp_path, bundle, cluster):
    images = _images(tmp_path / "in", 2, 24)
    _invoke("upscale", images, "-o", tmp_path / "seed4", "-e", bundle, "--seed", "4")
    _invoke("upscale", images, "-o", tmp_path / "out", "-e", bundle)  # one process: no run record
    code, output = _invoke("upscale", images, "-o", tmp_path / "out", "-e", bundle, "--seed", "4", *WORKERS)
    assert code == 1 and f"no {RECORD_NAME} naming the bundle" in output
    code, output = _invoke("upscale", images, "-o", tmp_path / "out", "-e", bundle, "--seed", "4", "--redo", *WORKERS)
    assert code == 0 and "2 done, 0 failed" in output
    assert _outputs(tmp_path / "out") == _outputs(tmp_path / "seed4")


@pytest.mark.slow
def test_a_worker_killed_mid_run_is_restarted_and_every_output_is_right(tmp_path, bundle):
    """The default path: a local Ray started by the command; the drill kills one worker's process once."""
    images = _images(tmp_path / "in", 6, 40)
    listing = tmp_path / "images.txt"
    listing.write_text("# a list file\n" + "".join(f"in/{p.name}\n" for p in sorted(images.iterdir())))
    _invoke("upscale", images, "-o", tmp_path / "single", "-e", bundle, *OPTIONS)
    marker = tmp_path / "worker-killed"
    run = _cli("upscale", listing, "-o", tmp_path / "out", "-e", bundle, *OPTIONS, "--workers", "2",
               env={FAULT_DRILL: str(marker)})
    _, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    assert marker.exists()  # the drill killed a worker's process after it upscaled an image, before writing it
    assert "6 done, 0 failed" in err and "Traceback" not in err
    assert sum(w["images"] for w in _summary(tmp_path / "out")["workers"]) == 6  # each image once
    assert _outputs(tmp_path / "out") == _outputs(tmp_path / "single")
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]


def _wait_for_outputs(run: subprocess.Popen, folder: Path, count: int) -> None:
    deadline = time.monotonic() + 240
    while len(list(folder.glob("img*.png"))) < count:
        assert run.poll() is None, run.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.02)


def _stamps(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.glob("img*.png")}


@pytest.mark.slow
def test_an_interrupted_then_killed_driver_resumes_without_redoing_finished_files(tmp_path, bundle, cluster):
    """Ctrl-C, then a SIGKILL of the next driver (both joined to a running cluster), then a run that finishes."""
    images, out = _images(tmp_path / "in", 30, 160), tmp_path / "out"
    args = ("upscale", images, "-o", out, "-e", bundle, *WORKERS, "--ray-address", cluster)
    run = _cli(*args)
    _wait_for_outputs(run, out, 1)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130 and "interrupted" in err and "Traceback" not in err, (run.returncode, err)
    first = _stamps(out)
    summary = _summary(out)  # counts what came back to the driver; a file can be written just before the signal
    assert summary["status"] == "interrupted" and summary["done"] <= len(first) < 30

    run = _cli(*args)
    _wait_for_outputs(run, out, len(first) + 1)
    run.kill()
    run.communicate(timeout=60)
    second = _stamps(out)
    assert {name: second[name] for name in first} == first and len(second) < 30

    code, output = _invoke(*args[:-2])  # the module's Ray, joined in-process
    assert code == 0 and f"{len(second)} already done" in output
    assert {name: _stamps(out)[name] for name in second} == second
    assert sorted(_stamps(out)) == [f"img{i:02d}.png" for i in range(30)]
    assert all(read_image(p).pixels.shape == (640, 672, 3) for p in out.glob("img*.png"))
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


RELEASED_UNDER_RAY = """
import sys, ray
from sr_runtime.scale_out.ray_job import Cluster, ray_session
seen = []
class NeedsRay:  # stands for Ray Data's executor, which cancels its tasks through Ray when released
    def __del__(self):
        seen.append(ray.is_initialized())
def interrupted():
    held = NeedsRay()
    raise KeyboardInterrupt
try:
    with ray_session(Cluster(1, sys.argv[1], 1, 0)):
        interrupted()
except KeyboardInterrupt as err:
    print(seen, err.__traceback__ is not None)
"""


def test_what_an_interrupt_holds_is_released_before_ray_shuts_down(cluster):
    """The CI failure of the test above, made certain: an interrupt that catches Ray Data between its first block
    and the iterator that would close it keeps the executor in its traceback; after ray.shutdown() that executor
    started a new local Ray to cancel its tasks, and failed with a traceback."""
    done = subprocess.run([sys.executable, "-c", RELEASED_UNDER_RAY, cluster], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.split("\n")[0] == "[True] True", done.stdout + done.stderr


def test_without_workers_ray_is_not_imported_and_its_options_are_refused(tmp_path, bundle):
    image = _images(tmp_path / "in", 1, 24) / "img00.png"
    check = ("import sys; from sr_export.cli import main; main(sys.argv[1:], standalone_mode=False); "
             "assert 'ray' not in sys.modules, 'ray was imported'")
    done = subprocess.run([sys.executable, "-c", check, "upscale", str(image), "-o", str(tmp_path / "o.png"),
                           "-e", str(bundle)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    code, output = _invoke("upscale", image, "-o", tmp_path / "o2.png", "-e", bundle, "--redo")
    assert code == 1 and "--redo: Scale-out options; they go with --workers N" in output
    code, output = _invoke("upscale", image, "-o", tmp_path / "o3.png", "-e", bundle, "--workers", "2")
    assert code == 1 and "--workers writes into a folder" in output


@pytest.mark.slow
def test_a_resumed_run_tells_other_images_of_the_same_names_from_its_own(tmp_path, bundle, cluster):
    first, other = _images(tmp_path / "first", 2, 24), tmp_path / "other"
    other.mkdir()
    for i, path in enumerate(sorted(first.iterdir())):
        write_image(other / path.name, make_image(24, 32, seed=10 + i))  # the same names, other pictures
    out = tmp_path / "out"
    assert _invoke("upscale", first, "-o", out, "-e", bundle, *WORKERS)[0] == 0
    before = _outputs(out)
    code, output = _invoke("upscale", other, "-o", out, "-e", bundle, *WORKERS)
    assert code == 1 and f"was made from {first / 'img00.png'}" in output and _outputs(out) == before
    # A single process never writes into a scale-out run's folder, nor a --redo of a subset beside another kind.
    code, output = _invoke("upscale", other, "-o", out, "-e", bundle)
    assert code == 1 and "output folder of a --workers run" in output and _outputs(out) == before
    code, output = _invoke("upscale", other / "img00.png", "-o", out, "-e", bundle, "--seed", "5", "--redo", *WORKERS)
    assert code == 1 and "also holds 1 outputs of another run" in output and _outputs(out) == before
    code, output = _invoke("upscale", other, "-o", out, "-e", bundle, "--redo", *WORKERS)  # the whole run again
    assert code == 0 and _outputs(out) != before and len(_outputs(out)) == 2


def test_more_workers_than_this_machine_has_cores_are_refused_at_once(tmp_path, bundle):
    images = _images(tmp_path / "in", 1, 24)
    code, output = _invoke("upscale", images, "-o", tmp_path / "out", "-e", bundle, "--workers", "1000")
    assert code == 1 and "--workers 1000 with 1 CPU each needs 1000 CPUs" in output
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_sigterm_ends_a_run_like_ctrl_c_with_its_summary(tmp_path, bundle, cluster):
    images, out = _images(tmp_path / "in", 30, 160), tmp_path / "out"
    run = _cli("upscale", images, "-o", out, "-e", bundle, *WORKERS, "--ray-address", cluster)
    _wait_for_outputs(run, out, 1)
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 128 + signal.SIGTERM and "terminated" in err and "Traceback" not in err, err
    assert _summary(out)["status"] == "interrupted"


@pytest.mark.slow
def test_steps_maps_of_a_run_are_its_own_and_a_users_file_is_never_replaced(tmp_path, bundle, cluster):
    images, out, maps = _images(tmp_path / "in", 2, 24), tmp_path / "out", tmp_path / "maps"
    maps.mkdir()
    (maps / "img00.png").write_bytes(b"the user's own file")
    args = ("upscale", images, "-o", out, "-e", bundle, "--steps-map", maps / "{stem}.png", *WORKERS)
    code, output = _invoke(*args)
    assert code == 1 and "no earlier run" in output and (maps / "img00.png").read_bytes() == b"the user's own file"
    (maps / "img00.png").unlink()
    assert _invoke(*args)[0] == 0 and len(_outputs(maps)) == 2
    (out / "img01.png").unlink()  # as a run killed between writing an image's map and its output leaves it
    code, output = _invoke(*args)
    assert code == 0 and "1 done, 0 failed" in output and "1 already done" in output
    assert (out / "img01.png").is_file() and len(_outputs(maps)) == 2
