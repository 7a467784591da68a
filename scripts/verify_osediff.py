#!/usr/bin/env python3
"""Check OSEDiff in sr-export against the OFFICIAL inference, run for real (``official_osediff.py``).

Runs in the sr-export venv, after ``official_osediff.py`` has written an output folder in the official venv
(``<stem>.npy``: the float32 [0, 1] image before the last 8-bit conversion, ``<stem>.txt``: the prompt). For each
input it runs, on the same tiny checkpoints and with the same options:

- reference: ``OSEDiffReference`` (what ``sr-export upscale --backend torch --model osediff`` runs);
- bundle (with ``--bundle DIR``): an ONNX Runtime CPU fp32 bundle built from the same checkpoints.

It prints max-abs and PSNR against the official image, whether the prompt strings are equal, and exits 1 when a
PSNR is below ``--min-psnr`` (default 45 dB) or a prompt differs.

    /work/main/.venv/bin/python scripts/verify_osediff.py --official /tmp/osd-run/default_adain \\
        --inputs /tmp/osd-run/inputs --checkpoints /tmp/osd-tiny [--color-fix adain] [--seed N] \\
        [--latent-tile 40 ...] [--bundle /tmp/osd-bundle]

``--checkpoints`` is the folder ``write_random_osediff`` wrote (``sd21/``, ``osediff.pkl``, ``ram/``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from sr_export.families.osediff.components import load_components
from sr_export.families.osediff.reference import OSEDiffReference
from sr_export.families.osediff.source import demo_paths
from sr_export.metrics import psnr
from sr_runtime.families.osediff.options import OSEDiffOptions
from sr_runtime.images import read_image
from sr_runtime.pipeline import Upscaler


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--official", type=Path, required=True, help="an output folder of official_osediff.py")
    ap.add_argument("--inputs", type=Path, required=True, help="the LR PNGs it ran on")
    ap.add_argument("--checkpoints", type=Path, required=True)
    ap.add_argument("--bundle", type=Path, help="also run this bundle of the same checkpoints")
    ap.add_argument("--color-fix", default=None)
    ap.add_argument("--prompt", default="")
    ap.add_argument("--seed", type=int, default=None)
    for name in ("latent-tile", "latent-overlap", "vae-encoder-tile", "vae-decoder-tile"):
        ap.add_argument(f"--{name}", type=int, default=None)
    ap.add_argument("--min-psnr", type=float, default=45.0)
    args = ap.parse_args()
    options = OSEDiffOptions(color_fix=args.color_fix, prompt=args.prompt, seed=args.seed,
                             latent_tile=args.latent_tile, latent_overlap=args.latent_overlap,
                             vae_encoder_tile=args.vae_encoder_tile, vae_decoder_tile=args.vae_decoder_tile)
    reference = OSEDiffReference(load_components(demo_paths(args.checkpoints)))
    upscaler = Upscaler.from_bundle(args.bundle) if args.bundle else None
    failed = False
    for path in sorted(args.inputs.glob("*.png")):
        official = np.load(args.official / f"{path.stem}.npy").transpose(1, 2, 0)
        official_prompt = (args.official / f"{path.stem}.txt").read_text(encoding="utf-8")
        image = read_image(path).pixels
        prompts: list[str] = []
        ours = {"reference": reference.upscale(image, options, on_prompt=prompts.append)}
        if upscaler is not None:
            ours["bundle"] = upscaler.upscale(image, color_fix=args.color_fix, prompt=args.prompt, seed=args.seed,
                                              latent_tile=args.latent_tile, latent_overlap=args.latent_overlap,
                                              vae_encoder_tile=args.vae_encoder_tile,
                                              vae_decoder_tile=args.vae_decoder_tile)
        same_prompt = prompts[0] == official_prompt
        failed |= not same_prompt
        line = [f"{path.stem:<14} prompt {'equal' if same_prompt else 'DIFFERS'}"]
        for name, result in ours.items():
            if result.shape != official.shape:
                line.append(f"{name} shape {result.shape} vs {official.shape}")
                failed = True
                continue
            value = psnr(result, official, peak=1.0)
            failed |= value < args.min_psnr
            line.append(f"{name} max-abs {np.abs(result - official).max():.3g} PSNR {value:.1f} dB")
        print("  ".join(line), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
