"""The PyTorch references of the InvSR and S3Diff demo models on fixed inputs, as the CLI runs them: what the
shared SD layer must leave unchanged. ``python tests/demo_outputs.py FOLDER`` writes them (``<case>.npy``);
tests/data/sd_layer/ holds them as the code before the SD layer wrote them."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

from sr_export.cli import main


def _lr(folder: Path, seed: int, height: int, width: int) -> Path:
    path = folder / f"lr-{seed}.png"
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def _invsr_options() -> list[str]:
    from sr_export.families.invsr.source import demo_checkpoints

    sd, predictor = demo_checkpoints()
    return ["--model", "invsr", "--sd-turbo", str(sd), "--noise-predictor", str(predictor),
            "--noise-predictor-config", str(predictor.parent / "sample-sd-turbo.yaml")]


def _s3diff_options() -> list[str]:
    from sr_export.families.s3diff.source import demo_checkpoints

    paths = demo_checkpoints()
    return ["--model", "s3diff", "--sd-turbo", str(paths.sd_turbo), "--checkpoint", str(paths.checkpoint),
            "--de-net", str(paths.de_net)]


# case -> (family options, LR seed and size, run options)
CASES = {
    "invsr-3steps-seeded": (_invsr_options, (1, 40, 36), ["--timesteps", "200,100,50", "--seed", "5", "--tile", "32",
                                                          "--color-fix", "wavelet"]),
    "s3diff-tiled-seeded": (_s3diff_options, (2, 24, 20), ["--latent-tile", "8", "--latent-overlap", "4",
                                                           "--vae-encoder-tile", "64", "--vae-decoder-tile", "16",
                                                           "--seed", "9"]),
}


def demo_output(case: str, folder: Path) -> np.ndarray:
    options, (seed, height, width), run = CASES[case]
    out = folder / f"{case}.npy"
    result = CliRunner().invoke(main, ["upscale", str(_lr(folder, seed, height, width)), "-o", str(out),
                                       "--backend", "torch", *options(), *run])
    if result.exit_code != 0:
        raise RuntimeError(result.output)
    return np.load(out)


if __name__ == "__main__":
    target = Path(sys.argv[1])
    target.mkdir(parents=True, exist_ok=True)
    for name in CASES:
        demo_output(name, target)
        print(f"wrote {target / name}.npy")
