#!/usr/bin/env python3
"""Check ResShift / SinSR in sr-export against the OFFICIAL samplers, run for real.

Three results per case, all float32 [0, 1] images before 8-bit rounding, on the same 8-bit PNG:

- official: zsyOAOA/ResShift ``ResShiftSampler.inference`` (resshift-v3, resshift-v1) or wyf0912/SinSR
  ``Sampler.inference(one_step=True)`` (sinsr), on the CPU in fp32 with the noise contract
  (official_resshift.py lists every stub and run-time patch, and why);
- reference: ``sr-export upscale --backend torch`` (our venv, through the CLI);
- bundle: ``sr-export build`` (ONNX Runtime CPU, fp32, tile 128, batch 2) then ``sr-export upscale -e``.

All load the same tiny seeded checkpoints in the official formats, with the official-layout YAML. The
script prints max-abs and PSNR for official vs reference, official vs bundle and reference vs bundle,
and exits 1 when a PSNR is below --min-psnr (default 45 dB).

Setup (commands that worked; CPU only, Python 3.11):

    # 1. the official code, from bare mirrors (ResShift 3ce1d81 2024-03-13, SinSR f173549 2024-09-12);
    #    traindata/ blobs are missing from the mirrors, so archive everything but them:
    G=/work/.mirror/zsyOAOA+ResShift/repo; mkdir -p /tmp/official/resshift
    git --git-dir=$G archive HEAD $(git --git-dir=$G ls-tree -r --name-only HEAD | grep -v '^traindata/\\|\\.png$\\|\\.jpg$\\|\\.gif$') | tar -x -C /tmp/official/resshift
    G=/work/.mirror/wyf0912+SinSR/repo; mkdir -p /tmp/official/sinsr
    git --git-dir=$G archive HEAD $(git --git-dir=$G ls-tree -r --name-only HEAD | grep -v '^traindata/') | tar -x -C /tmp/official/sinsr

    # 2. a SEPARATE venv for it (what worked: torch 2.13.0+cpu, numpy 2.4.6, omegaconf 2.4.0, loguru 0.7.3,
    #    einops 0.8.2, opencv-python-headless 5.1.0.95, scikit-image 0.26.0, scipy 1.17.1, PyYAML 6.0.4);
    #    no timm / torchvision / xformers (stubbed or absent; without xformers the VQ attention is the
    #    plain one, the same arithmetic as ours below 128x128 latents):
    python3 -m venv /tmp/resshift-venv && . /tmp/resshift-venv/bin/activate
    pip install torch==2.13.0 numpy omegaconf loguru einops opencv-python-headless scikit-image scipy pyyaml pillow

    # 3. tiny checkpoints in the official formats (in the sr-export venv):
    . /work/main/.venv/bin/activate && python -c "from sr_export.families.resshift.random_checkpoints import \\
        write_random_model as w; [print(w(f'/tmp/verify-resshift/weights/{m}', m, seed=3)) \\
        for m in ('resshift-v3', 'resshift-v1', 'sinsr')]"

Run (in the OFFICIAL venv; our side runs as subprocesses through the `sr-export` CLI of our venv):

    /tmp/resshift-venv/bin/python scripts/verify_resshift.py all --work /tmp/verify-resshift \\
        --resshift-repo /tmp/official/resshift --sinsr-repo /tmp/official/sinsr \\
        --sr-export /work/main/.venv/bin/sr-export

Modes: `images`, `official` (one repository per process; `all` starts them), `reference`, `bundle`,
`compare`; `--cases a,b` selects cases by name.

Last run (tiny weights, seed 3; 10 cases: 1/4/15 steps, one patch, padded 48x80 -> 64x128, 64-px chops,
72-px chops padded to 128, zero noise): the reference equals the official bit for bit (max-abs 0) in every
case; the ONNX Runtime bundle is 122.3-127.2 dB from both (max-abs <= 1.06e-5, no code flipped).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sr_export.metrics import psnr

# name -> (height, width) of the LR image
IMAGES = {"h64w64": (64, 64), "h48w80": (48, 80), "h100w150": (100, 150), "h72w100": (72, 100)}
CODES = {"resshift-v3": "resshift", "resshift-v1": "resshift", "sinsr": "sinsr"}
TILE, BATCH = 128, 2


@dataclass(frozen=True)
class Case:
    model: str
    image: str
    chop_size: int = 512  # the official CLIs' default, stride 448
    chop_stride: int = 448
    zero_noise: bool = False

    @property
    def name(self) -> str:
        noise = "zero" if self.zero_noise else "seed12345"
        return f"{self.model}_{self.image}_chop{self.chop_size}-{self.chop_stride}_{noise}"


CASES = [
    Case("resshift-v3", "h64w64"),  # one 64-px patch, no padding
    Case("resshift-v3", "h48w80"),  # one patch reflect-padded to 64x128
    Case("resshift-v3", "h100w150", 64, 48),  # 2x3 patches of 64 px, averaged
    Case("resshift-v3", "h72w100", 72, 60),  # a chop size the official CLI does not offer: 72-px patches -> 128
    Case("resshift-v3", "h48w80", zero_noise=True),
    Case("resshift-v1", "h48w80"),
    Case("resshift-v1", "h100w150", 64, 48),
    Case("sinsr", "h48w80"),
    Case("sinsr", "h100w150", 64, 48),
    Case("sinsr", "h48w80", zero_noise=True),
]


def selected(names: str, code: str | None = None) -> list[Case]:
    wanted = set(names.split(",")) if names else None
    return [c for c in CASES if (wanted is None or c.name in wanted) and (code is None or CODES[c.model] == code)]


def make_images(folder: Path) -> None:
    """Deterministic 8-bit RGB PNGs: colour ramps, sinusoids and some noise."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for index, (name, (h, w)) in enumerate(IMAGES.items()):
        rng = np.random.RandomState(200 + index)
        y, x = np.mgrid[0:h, 0:w].astype(np.float64)
        channels = [0.3 + 0.35 * (x / w) * (0.4 + 0.2 * c) + 0.2 * np.sin(rng.uniform(0.05, 0.3) * y
                    + rng.uniform(0.05, 0.3) * x + c) for c in range(3)]
        image = np.stack(channels, axis=2) + rng.normal(0, 0.04, (h, w, 3))
        Image.fromarray(np.clip(np.rint(image * 255), 0, 255).astype(np.uint8), "RGB").save(folder / f"{name}.png")


def _files(work: Path, model: str) -> dict[str, Path]:
    folder = work / "weights" / model
    config = next(folder.glob("*.yaml"))
    denoiser = next(p for p in folder.glob("*.pth") if p.name != "autoencoder_vq_f4.pth")
    return {"config": config, "denoiser": denoiser, "autoencoder": folder / "autoencoder_vq_f4.pth"}


def run_official(args, code: str) -> None:
    from official_resshift import OfficialRun

    work = Path(args.work)
    repo = args.resshift_repo if code == "resshift" else args.sinsr_repo
    out = work / "official"
    out.mkdir(parents=True, exist_ok=True)
    for case in selected(args.cases, code):
        f = _files(work, case.model)
        run = OfficialRun(Path(repo), code, f["config"], f["denoiser"], f["autoencoder"])
        seed = None if case.zero_noise else 12345
        result = run.upscale(work / "lr" / f"{case.image}.png", work / "official-png" / case.name, case.chop_size,
                             case.chop_stride, seed)
        np.save(out / f"{case.name}.npy", result.astype(np.float32))
        print(f"official {case.name}: {result.shape[1]}x{result.shape[0]}, {len(run.draw_shapes)} draws of "
              f"{sorted(set(run.draw_shapes))}", flush=True)


def _cli(args, command: list[str], what: str) -> None:
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    done = subprocess.run([args.sr_export, *command], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{what} failed:\n{' '.join(command)}\n{done.stderr[-3000:]}")


def _case_options(case: Case) -> list[str]:
    return ["--chop-size", str(case.chop_size), "--chop-stride", str(case.chop_stride)] + (
        ["--zero-noise"] if case.zero_noise else [])


def _checkpoint_options(work: Path, model: str) -> list[str]:
    f = _files(work, model)
    return ["--model", model, "--checkpoint", str(f["denoiser"]), "--autoencoder", str(f["autoencoder"]),
            "--config", str(f["config"])]


def run_reference(args) -> None:
    work = Path(args.work)
    for case in selected(args.cases):
        out = work / "reference" / f"{case.name}.npy"
        out.parent.mkdir(parents=True, exist_ok=True)
        _cli(args, ["upscale", str(work / "lr" / f"{case.image}.png"), "-o", str(out), "--backend", "torch",
                    *_checkpoint_options(work, case.model), *_case_options(case)], f"reference {case.name}")
        print(f"reference {case.name}: ok", flush=True)


def run_bundle(args) -> None:
    work = Path(args.work)
    cases = selected(args.cases)
    for model in dict.fromkeys(c.model for c in cases):
        _cli(args, ["build", *_checkpoint_options(work, model), "--backend", "onnxruntime-cpu", "--precision", "fp32",
                    "--tile", str(TILE), "--batch", str(BATCH), "-o", str(work / "bundles" / model)], f"build {model}")
        print(f"bundle {model}: built", flush=True)
    for case in cases:
        out = work / "bundle" / f"{case.name}.npy"
        out.parent.mkdir(parents=True, exist_ok=True)
        _cli(args, ["upscale", str(work / "lr" / f"{case.image}.png"), "-o", str(out), "-e",
                    str(work / "bundles" / case.model), *_case_options(case)], f"bundle {case.name}")
        print(f"bundle {case.name}: ok", flush=True)


def compare(args) -> int:
    work = Path(args.work)
    pairs = (("official", "reference"), ("official", "bundle"), ("reference", "bundle"))
    print(f"{'case':52s} " + " ".join(f"{a[:3]}-{b[:3]} maxabs / PSNR".rjust(28) for a, b in pairs))
    failed = 0
    for case in selected(args.cases):
        results = {side: np.load(work / side / f"{case.name}.npy") for side in ("official", "reference", "bundle")}
        cells = []
        for a, b in pairs:
            value = psnr(results[a], results[b])
            failed += value < args.min_psnr
            cells.append(f"{np.abs(results[a] - results[b]).max():10.3g} / {value:7.2f} dB".rjust(28))
        print(f"{case.name:52s} " + " ".join(cells))
    print("all above" if not failed else f"{failed} comparisons below", f"{args.min_psnr} dB")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["all", "images", "official", "reference", "bundle", "compare"])
    parser.add_argument("--work", default="/tmp/verify-resshift")
    parser.add_argument("--resshift-repo", default="/tmp/official/resshift")
    parser.add_argument("--sinsr-repo", default="/tmp/official/sinsr")
    parser.add_argument("--code", choices=sorted(set(CODES.values())), help="official: which repository")
    parser.add_argument("--sr-export", default="/work/main/.venv/bin/sr-export")
    parser.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-psnr", type=float, default=45.0)
    args = parser.parse_args()
    if args.mode in ("all", "images"):
        make_images(Path(args.work) / "lr")
    if args.mode == "official":
        run_official(args, args.code)
    if args.mode == "all":
        for code in sorted(set(CODES.values())):  # a process per repository: both name their modules alike
            command = [sys.executable, __file__, "official", "--code", code, "--work", args.work, "--cases", args.cases,
                       "--resshift-repo", args.resshift_repo, "--sinsr-repo", args.sinsr_repo]
            if subprocess.run(command).returncode:
                return 1
    if args.mode in ("all", "reference"):
        run_reference(args)
    if args.mode in ("all", "bundle"):
        run_bundle(args)
    if args.mode in ("all", "compare"):
        return compare(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
