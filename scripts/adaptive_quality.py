#!/usr/bin/env python3
"""Is patch-adaptive sampling worth it on YOUR images? Time and quality of ``--steps auto`` against
uniform 5 steps, with real checkpoints (random weights say nothing about quality).

    sr-export build --steps adaptive --sd-turbo ~/models/sd-turbo --noise-predictor weights/noise_predictor_sd_turbo_v5.pth
    python scripts/adaptive_quality.py engines/invsr-s1-3-5-onnxruntime-cpu-fp32 photos/ [--thresholds 0.15,0.5]

Per image and in total: the wall time of both runs, the tile-steps each ran, and the PSNR of ``auto``
against uniform 5 (how far the shortcut strays from the longest schedule). LPIPS is added when the
``lpips`` package and its weights are available offline; otherwise the script says it is skipped.
Tune ``--adaptive-thresholds`` until the PSNR / LPIPS loss is acceptable for the time saved.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from sr_export.metrics import psnr
from sr_runtime.images import collect_inputs, read_image
from sr_runtime.pipeline import Upscaler


def lpips_metric():
    """LPIPS (AlexNet) as a function of two (H, W, 3) images, or a reason why it is unavailable."""
    try:
        import lpips
        import torch

        model = lpips.LPIPS(net="alex", verbose=False)
    except Exception as err:  # not installed, or its weights cannot be fetched offline
        return f"LPIPS skipped ({type(err).__name__}: {err})"

    def distance(a: np.ndarray, b: np.ndarray) -> float:
        def tensor(x):
            return torch.from_numpy(x.transpose(2, 0, 1)[None].copy()) * 2 - 1

        with torch.no_grad():
            return float(model(tensor(a), tensor(b)))

    return distance


def timed(upscaler: Upscaler, pixels: np.ndarray, **options) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    out = upscaler.upscale(pixels, **options)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, help="a bundle built with --steps adaptive (or 1,3,5)")
    parser.add_argument("images", nargs="+", help="image files and/or folders")
    parser.add_argument("--thresholds", default=None, help="adaptive thresholds, e.g. 0.15,0.5")
    args = parser.parse_args()
    thresholds = tuple(float(t) for t in args.thresholds.split(",")) if args.thresholds else None
    upscaler = Upscaler.from_bundle(args.bundle)
    if 5 not in upscaler.manifest.section.group_steps:
        raise SystemExit("the bundle has no 5-step group to compare with: build it with --steps adaptive")
    metric = lpips_metric()
    if isinstance(metric, str):
        print(metric)
    totals = np.zeros(2)
    print(f"{'image':<28}{'uniform 5 s':>12}{'auto s':>9}{'PSNR dB':>9}{'LPIPS':>8}")
    for path in collect_inputs(args.images).images:
        pixels = read_image(path).pixels
        uniform, t_uniform = timed(upscaler, pixels, steps=5)
        adaptive, t_auto = timed(upscaler, pixels, steps="auto", adaptive_thresholds=thresholds)
        totals += (t_uniform, t_auto)
        lpips_value = f"{metric(adaptive, uniform):8.4f}" if callable(metric) else f"{'-':>8}"
        print(f"{path.name:<28}{t_uniform:12.1f}{t_auto:9.1f}{psnr(adaptive, uniform, peak=1.0):9.2f}{lpips_value}")
    print(f"total: uniform 5 {totals[0]:.1f} s, auto {totals[1]:.1f} s ({totals[0] / max(totals[1], 1e-9):.2f}x)")


if __name__ == "__main__":
    main()
