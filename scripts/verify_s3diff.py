#!/usr/bin/env python3
"""Check S3Diff in sr-export against the OFFICIAL inference, run for real.

Three results per case, all float32 [0, 1] images before 8-bit rounding, on the same 8-bit PNG:

- official: ArcticHare105/S3Diff (``src/inference_s3diff.py`` + ``src/s3diff_tile.py``) on the CPU in fp32
  (official_s3diff.py lists every stub and run-time patch, and why);
- reference: ``sr-export upscale --backend torch --model s3diff`` (our venv, through the CLI);
- bundle: ``sr-export build --model s3diff`` (ONNX Runtime CPU, fp32, tile 16, batch 2), then ``upscale -e``.

All load the same tiny seeded checkpoints in the official formats (``s3diff.pkl``, ``de_net.pth``, an SD-Turbo
folder). It prints max-abs and PSNR for official vs reference, official vs bundle and reference vs bundle,
and exits 1 when a PSNR is below --min-psnr (default 45 dB).

Setup (commands that worked; CPU only, Python 3.11):

    # 1. the official code from the bare mirror (de_net.pth and the pictures are absent from it):
    G=/work/.mirror/ArcticHare105+S3Diff/repo; mkdir -p /tmp/s3diff_official; cd /tmp/s3diff_official
    git --git-dir=$G ls-tree -r HEAD | while read mode type sha path; do mkdir -p "$(dirname "$path")"; \\
        git --git-dir=$G cat-file blob $sha > "$path" 2>/dev/null; done

    # 2. a SEPARATE venv with the repository's pins (torch 2.13 CPU instead of its 2.1; no torchvision):
    python3 -m venv /tmp/s3diff-venv && /tmp/s3diff-venv/bin/pip install torch==2.13.0 "numpy<2" diffusers==0.25.1 \\
        peft==0.10.0 transformers==4.35.2 huggingface_hub==0.22.2 accelerate==0.34.2 einops pillow safetensors

    # 3. tiny checkpoints in the official formats (in the sr-export venv):
    /work/main/.venv/bin/python -c "from sr_export.families.s3diff.random_checkpoints import write_random_s3diff; \\
        print(write_random_s3diff('/tmp/verify-s3diff/weights', seed=3))"

Run (in the OFFICIAL venv; our side runs as subprocesses through the `sr-export` CLI of our venv):

    /tmp/s3diff-venv/bin/python scripts/verify_s3diff.py all --work /tmp/verify-s3diff \\
        --repo /tmp/s3diff_official --sr-export /work/main/.venv/bin/sr-export

Modes: `images`, `official`, `reference`, `bundle`, `compare` (`all` runs them in order); `--cases a,b`.

Last run (tiny weights, seed 3; 2-core CPU under a load average of 5-8; about 12 min for `all`):

    case                           official-reference      official-bundle         reference-bundle
                                   max-abs   PSNR dB       max-abs   PSNR dB       max-abs   PSNR dB
    h32w40_none                    1.22e-05  118.3         9.75e-06  117.8         9.12e-06  117.7
    h32w40_wavelet                 0.00394    84.9         0.00394    84.3         0.00392    85.2
    h36w50_wavelet_seed5           0.00393    87.5         0.00393    90.5         0.00392    89.1
    h64w56_latent_tiles            8.58e-06  119.4         1.36e-05  117.9         1.01e-05  118.4
    h64w56_vae_encoder_tiles       1.05e-05  118.5         1.25e-05  118.7         1.2e-05   118.7
    h64w56_vae_decoder_tiles       1.01e-05  118.8         1.22e-05  117.9         9.3e-06   118.2
    h64w56_all_tiles_wavelet_seed7 0.00394    88.6         0.00393    87.4         0.00392    88.2

Without the colour fix every pair agrees to about 1e-5. With it the max-abs is one 8-bit level (1/255): the
official applies the wavelet fix to 8-bit images (truncated with ``mul(255).byte()``), so a difference of
1e-7 next to a level boundary flips a byte; a few such pixels keep the PSNR at 84-90 dB.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sr_export.metrics import psnr

# name -> (height, width) of the LR image
IMAGES = {"h32w40": (32, 40), "h36w50": (36, 50), "h64w56": (64, 56)}
# Tile sizes small enough for the tiny images to take every official tiling (latent, VAE encoder, VAE decoder).
LATENT = {"latent_tile": 16, "latent_overlap": 4}
ENCODER = {"vae_encoder_tile": 128}
DECODER = {"vae_decoder_tile": 8}


@dataclass(frozen=True)
class Case:
    name: str
    image: str
    color_fix: str = "wavelet"  # or "none" (the official nofix)
    seed: int | None = None
    tiles: dict = field(default_factory=dict)


CASES = [
    Case("h32w40_none", "h32w40", "none"),
    Case("h32w40_wavelet", "h32w40"),
    Case("h36w50_wavelet_seed5", "h36w50", seed=5),  # reflect padding of 144x200 to 192x256
    Case("h64w56_latent_tiles", "h64w56", "none", tiles=LATENT),
    Case("h64w56_vae_encoder_tiles", "h64w56", "none", tiles=ENCODER),
    Case("h64w56_vae_decoder_tiles", "h64w56", "none", tiles=DECODER),
    Case("h64w56_all_tiles_wavelet_seed7", "h64w56", seed=7, tiles={**LATENT, **ENCODER, **DECODER}),
]


def make_images(folder: Path) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for index, (name, (h, w)) in enumerate(IMAGES.items()):
        rng = np.random.default_rng(100 + index)
        y, x = np.mgrid[0:h, 0:w].astype(np.float64)
        image = np.stack([0.5 + 0.3 * np.sin(x / 5 + c) * np.cos(y / 4 - c) for c in range(3)], axis=2)
        image += rng.normal(0, 0.05, (h, w, 3))
        Image.fromarray(np.clip(np.rint(image * 255), 0, 255).astype(np.uint8), "RGB").save(folder / f"{name}.png")


def _weights(work: Path) -> dict[str, Path]:
    folder = work / "weights"
    return {"sd_turbo": folder / "sd-turbo", "checkpoint": folder / "s3diff.pkl", "de_net": folder / "de_net.pth"}


def _ranks(checkpoint: Path) -> tuple[int, int]:
    import torch

    data = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return data["rank_unet"], data["rank_vae"]


def run_official(case: Case, args) -> None:
    w = _weights(args.work)
    rank_unet, rank_vae = _ranks(w["checkpoint"])
    command = [sys.executable, str(Path(__file__).with_name("official_s3diff.py")), "--repo", str(args.repo),
               "--input", str(args.work / "images" / f"{case.image}.png"), "--output", str(_out(args, "official", case)),
               "--sd-path", str(w["sd_turbo"]), "--pretrained-path", str(w["checkpoint"]), "--de-net-path",
               str(w["de_net"]), "--lora-rank-unet", str(rank_unet), "--lora-rank-vae", str(rank_vae),
               "--align-method", "nofix" if case.color_fix == "none" else "wavelet"]
    official_names = {"latent_tile": "--latent-tiled-size", "latent_overlap": "--latent-tiled-overlap",
                      "vae_encoder_tile": "--vae-encoder-tiled-size", "vae_decoder_tile": "--vae-decoder-tiled-size"}
    for key, value in case.tiles.items():
        command += [official_names[key], str(value)]
    if case.seed is not None:
        command += ["--seed", str(case.seed)]
    subprocess.run(command, check=True, cwd=args.repo)


def _ours(case: Case, args, engine: list[str], side: str) -> None:
    command = [args.sr_export, "upscale", str(args.work / "images" / f"{case.image}.png"), "-o",
               str(_out(args, side, case)), *engine, "--color-fix", case.color_fix]
    for key, value in case.tiles.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    if case.seed is not None:
        command += ["--seed", str(case.seed)]
    subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def run_reference(case: Case, args) -> None:
    w = _weights(args.work)
    _ours(case, args, ["--backend", "torch", "--model", "s3diff", "--sd-turbo", str(w["sd_turbo"]), "--checkpoint",
                       str(w["checkpoint"]), "--de-net", str(w["de_net"])], "reference")


def build_bundle(args) -> Path:
    w = _weights(args.work)
    bundle = args.work / "engines"  # not the "bundle" folder the outputs go to
    subprocess.run([args.sr_export, "build", "--model", "s3diff", "--sd-turbo", str(w["sd_turbo"]), "--checkpoint",
                    str(w["checkpoint"]), "--de-net", str(w["de_net"]), "--backend", "onnxruntime-cpu", "--tile", "16",
                    "--batch", "2", "-o", str(bundle)], check=True)
    return bundle


def _out(args, side: str, case: Case) -> Path:
    folder = args.work / side
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{case.name}.npy"


def compare(cases: list[Case], args) -> bool:
    pairs = (("official", "reference"), ("official", "bundle"), ("reference", "bundle"))
    print(f"{'case':34s}" + "".join(f" {a[:3]}-{b[:3]} max-abs / PSNR dB  " for a, b in pairs))
    ok = True
    for case in cases:
        arrays = {side: np.load(_out(args, side, case)) for side in ("official", "reference", "bundle")}
        row = f"{case.name:34s}"
        for a, b in pairs:
            value = psnr(arrays[a], arrays[b])
            ok &= value >= args.min_psnr
            row += f" {np.abs(arrays[a] - arrays[b]).max():10.3g} / {value:6.1f}          "
        print(row)
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["images", "official", "reference", "bundle", "compare", "all"])
    parser.add_argument("--work", type=Path, default=Path("/tmp/verify-s3diff"))
    parser.add_argument("--repo", type=Path, default=Path("/tmp/s3diff_official"))
    parser.add_argument("--sr-export", default="sr-export")
    parser.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    parser.add_argument("--min-psnr", type=float, default=45.0)
    args = parser.parse_args()
    args.work = args.work.resolve()
    wanted = set(args.cases.split(",")) if args.cases else None
    cases = [c for c in CASES if wanted is None or c.name in wanted]
    if args.mode in ("images", "all"):
        make_images(args.work / "images")
    if args.mode in ("official", "all"):
        for case in cases:
            run_official(case, args)
    if args.mode in ("reference", "all"):
        for case in cases:
            run_reference(case, args)
    if args.mode in ("bundle", "all"):
        bundle = build_bundle(args)
        for case in cases:
            _ours(case, args, ["-e", str(bundle)], "bundle")
    if args.mode in ("compare", "all") and not compare(cases, args):
        sys.exit(1)


if __name__ == "__main__":
    main()
