#!/usr/bin/env python3
"""Check `sr-export upscale --backend torch` against the OFFICIAL InvSR sampler, run for real.

Both sides load the same (tiny, seeded) weights in the official file formats, run in fp32 on the
CPU with the posterior MEANS (no noise), and upscale the same 8-bit PNGs; the script reports the
max-abs difference and PSNR of the two float32 outputs per case, and can dump the intermediate
tensors of both sides (prompt embedding, noise-predictor moments, VAE moments, UNet inputs/outputs,
decoder input/output) to find the first stage that differs.

Modules: verify_common.py (cases, LR images, stage hooks, metrics), official_invsr.py (the official
sampler: stubs, run-time patches, weight check; what it patches is listed in its docstring) and this
file (our side, the comparison, the command line).

Setup (commands that worked; CPU only, Python 3.11):

    # 1. the official code (public repo zsyOAOA/InvSR, commit 609788cd, 2026-02-08); from a bare mirror:
    mkdir -p /tmp/invsr-official && git --git-dir=MIRROR archive HEAD | tar -x -C /tmp/invsr-official
    #    (a mirror with missing blobs makes `git archive` fail; then write each blob of
    #    `git ls-tree -r HEAD` with `git cat-file blob`: a mirror may lack assets/enhance-1.png, which the sampler does not read)

    # 2. a SEPARATE venv for it (the vendored diffusers 0.32.0.dev0 replaces upstream diffusers)
    python3 -m venv /tmp/official-venv && . /tmp/official-venv/bin/activate
    pip install torch==2.13.0            # the local CPU build; a plain `torch` pulls the CUDA wheels
    pip install numpy==1.26.3 transformers==4.46.0 accelerate==0.34.2 huggingface-hub==0.25.1 \
        safetensors==0.4.5 scikit-image==0.24.0 opencv-python-headless==4.10.0.84 \
        omegaconf loguru einops scipy requests importlib_metadata regex filelock
    pip install --no-deps -e /tmp/invsr-official    # setup.py installs src/diffusers
    #    (pins from the official environment.yaml; transformers 4.46.0 is "yanked" on PyPI but installs.)
    #    torchvision is NOT installed: no CPU build of it matches torch 2.13 here (the PyPI 0.28.0 wheel is
    #    a CUDA build whose _C.so does not load, and `import torchvision` then fails). The official
    #    inference path does not use it; see official_invsr._install_stubs() for the imports stubbed instead.

    # 3. tiny checkpoints in the official formats (in the sr-export venv), twice: the SD-2.x UNet depth
    #    (4 levels: mod_lq = 16) and a 2-level UNet (mod_lq = 4), each as a hub cache (official side)
    #    and a diffusers folder (our side); one noise predictor serves both.
    . /work/main/.venv/bin/activate && python -c "from pathlib import Path; \
        from sr_export.families.invsr.random_checkpoints import write_random_sd_turbo, write_random_noise_predictor; \
        write_random_sd_turbo(Path('/tmp/verify/hub'), seed=3, hub_layout=True); \
        write_random_sd_turbo(Path('/tmp/verify/sd-turbo'), seed=3); \
        write_random_sd_turbo(Path('/tmp/verify/hub-unet2'), seed=3, hub_layout=True, unet_levels=2); \
        write_random_sd_turbo(Path('/tmp/verify/sd-turbo-unet2'), seed=3, unet_levels=2); \
        print(write_random_noise_predictor(Path('/tmp/verify/np'), seed=3))"

Run (in the OFFICIAL venv; our side runs as a subprocess through the `sr-export` CLI of our venv;
about 8 min per set on a 2-core CPU; the last run's numbers are in scripts/README.md):

    # 4-level UNet (the defaults point at /tmp/verify/{hub,sd-turbo,np})
    /tmp/official-venv/bin/python scripts/verify_invsr.py all \
        --official-repo /tmp/invsr-official --work /tmp/verify/run \
        --sr-export /work/main/.venv/bin/sr-export [--dump]
    # 2-level UNet: the same with the other weights and a separate work folder
    /tmp/official-venv/bin/python scripts/verify_invsr.py all \
        --official-repo /tmp/invsr-official --work /tmp/verify/run-unet2 \
        --hub /tmp/verify/hub-unet2 --sd-turbo /tmp/verify/sd-turbo-unet2 \
        --sr-export /work/main/.venv/bin/sr-export [--dump]

Other modes: `images` (write the LR PNGs), `official` (official side only), `ours` (our CLI only),
`ours-dump` (our side's intermediates; run with our venv's python), `compare` (table from saved
outputs). `--dump` also writes both sides' intermediates (npz per case) and compares them stage by stage.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from official_invsr import run_official
from verify_common import (
    IMAGES,
    STAGES,
    Recorder,
    case_name,
    check_same_weights,
    make_images,
    selected_cases,
)

from sr_export.metrics import psnr


def run_ours_cli(args) -> None:
    out = Path(args.work) / "ours"
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    for image, steps, color_fix in selected_cases(args.cases):
        name = case_name(image, steps, color_fix)
        command = [
            args.sr_export, "upscale", str(Path(args.work) / "lr" / f"{image}.png"), "-o", str(out / f"{name}.npy"),
            "--backend", "torch", "--sd-turbo", str(args.sd_turbo), "--noise-predictor", str(args.np_ckpt),
            "--noise-predictor-config", str(args.np_config), "--steps", str(steps),
        ] + (["--color-fix", color_fix] if color_fix else [])
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"our CLI failed for {name}:\n{' '.join(command)}\n{done.stderr[-3000:]}")
        print(f"ours {name}: ok", flush=True)


def run_ours_dump(args) -> None:
    """Our reference with the same hooks (needs our venv: sr_export importable)."""
    import torch

    from sr_export.families.invsr.reference import InvSRReference, load_components
    from sr_export.families.invsr.schedule import build_schedule, resolve_timesteps
    from sr_runtime.families.invsr.image_loop import UpscaleSettings
    from sr_runtime.images import read_image

    torch.set_num_threads(args.threads)
    out = Path(args.work) / "ours"
    out.mkdir(parents=True, exist_ok=True)
    for image, steps, color_fix in selected_cases(args.cases):
        name = case_name(image, steps, color_fix)
        components = load_components(args.sd_turbo, args.np_ckpt, args.np_config)
        schedule = build_schedule(components.scheduler_config, resolve_timesteps(steps))
        recorder = Recorder()
        sd = components.sd_turbo
        recorder.attach(sd.text_encoder, components.noise_predictor.encoder.conv_out, sd.vae, sd.unet)
        reference = InvSRReference(components, schedule)
        pixels = read_image(Path(args.work) / "lr" / f"{image}.png").pixels
        np.save(out / f"{image}_input.npy", pixels)
        result = reference.upscale(pixels, UpscaleSettings(tile=128, batch=8, color_fix=color_fix))
        np.save(out / f"{name}_api.npy", result)
        recorder.save(out / f"{name}_dump.npz")
        print(f"ours (API, dumped) {name}: {result.shape}", flush=True)


def compare(args) -> list[dict]:
    work, tolerance = Path(args.work), args.tolerance
    rows = []
    for image in IMAGES:
        a, b = work / "official" / f"{image}_input.npy", work / "ours" / f"{image}_input.npy"
        if a.exists() and b.exists():
            diff = np.abs(np.load(a) - np.load(b)).max()
            print(f"LR input {image}: official imread vs our read_image max-abs {diff:.3g}")
    print()
    header = f"{'case':<26}{'shape':>16}{'max-abs':>12}{'mean-abs':>12}{'PSNR dB':>10}"
    print(header)
    print("-" * len(header))
    for image, steps, color_fix in selected_cases(args.cases):
        name = case_name(image, steps, color_fix)
        official = np.load(work / "official" / f"{name}.npy")
        ours = np.load(work / "ours" / f"{name}.npy")
        if official.shape != ours.shape:
            print(f"{name:<26} shape mismatch: official {official.shape} vs ours {ours.shape}")
            rows.append({"case": name, "error": "shape"})
            continue
        d = np.abs(official.astype(np.float64) - ours.astype(np.float64))
        row = {"case": name, "shape": list(official.shape), "max_abs": float(d.max()),
               "mean_abs": float(d.mean()), "psnr_db": psnr(official, ours)}
        rows.append(row)
        print(f"{name:<26}{str(official.shape):>16}{row['max_abs']:>12.3g}{row['mean_abs']:>12.3g}{row['psnr_db']:>10.1f}")
        api = work / "ours" / f"{name}_api.npy"
        if api.exists():
            print(f"    our CLI vs our API (ours-dump run)  max-abs {np.abs(np.load(api) - ours).max():.3g}")
        _compare_dumps(work, name)
    (work / "results.json").write_text(json.dumps(rows, indent=1))
    compared = [r for r in rows if "max_abs" in r]
    if compared:
        worst = max(r["max_abs"] for r in compared)
        print(f"\n{len(compared)}/{len(rows)} cases compared; worst max-abs {worst:.3g}, "
              f"lowest PSNR {min(r['psnr_db'] for r in compared):.1f} dB (tolerance {tolerance:g})")
    return rows


def _compare_dumps(work: Path, name: str) -> None:
    paths = work / "official" / f"{name}_dump.npz", work / "ours" / f"{name}_dump.npz"
    if not all(p.exists() for p in paths):
        return
    official, ours = (np.load(p) for p in paths)
    for key in sorted(set(official.files) | set(ours.files), key=lambda k: (STAGES.index(k.rsplit("_", 1)[0]), k)):
        if key not in official.files or key not in ours.files:
            print(f"    {key:<16} only on the {'official' if key in official.files else 'our'} side")
            continue
        a, b = official[key], ours[key]
        note = ""
        if key.startswith("text_") and b.shape[0] == 1 and a.shape[0] > 1 and a.shape[1:] == b.shape[1:]:
            # the official encodes the prompt once per pipeline call and tile; ours once per run
            b, note = np.broadcast_to(b, a.shape), f"  (ours: 1 row, broadcast to {a.shape[0]})"
        if a.shape != b.shape:
            print(f"    {key:<16} shapes {a.shape} vs {b.shape}")
            continue
        print(f"    {key:<16} {str(a.shape):<22} max-abs {np.abs(a - b).max():.3g}{note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["all", "images", "official", "ours", "ours-dump", "compare"])
    parser.add_argument("--official-repo", default="/tmp/invsr-official", type=Path)
    parser.add_argument("--work", default="/tmp/verify/run", type=Path, help="LR PNGs and outputs go here")
    parser.add_argument("--hub", default="/tmp/verify/hub", type=Path, help="hub cache_dir for the official side")
    parser.add_argument("--sd-turbo", default="/tmp/verify/sd-turbo", type=Path, help="diffusers folder, our side")
    parser.add_argument("--np-ckpt", default="/tmp/verify/np/noise_predictor_sd_turbo_v5.pth", type=Path)
    parser.add_argument("--np-config", default="/tmp/verify/np/sample-sd-turbo.yaml", type=Path)
    parser.add_argument("--sr-export", default="/work/main/.venv/bin/sr-export", help="our CLI")
    parser.add_argument("--our-python", default="/work/main/.venv/bin/python", help="for ours-dump under `all --dump`")
    parser.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tolerance", type=float, default=1e-5, help="max-abs above this fails (exit 1)")
    parser.add_argument("--dump", action="store_true", help="also dump and compare intermediate tensors")
    args = parser.parse_args()

    if args.mode in ("all", "images"):
        make_images(args.work / "lr")
    if args.mode == "all":
        check_same_weights(args.hub, args.sd_turbo)
    if args.mode in ("all", "official"):
        run_official(args)
    if args.mode in ("all", "ours"):
        run_ours_cli(args)
    if args.mode == "ours-dump" or (args.mode == "all" and args.dump):
        if args.mode == "ours-dump":
            run_ours_dump(args)
        else:
            forward = [a for a in sys.argv[2:] if a != "--dump"]
            subprocess.run([args.our_python, __file__, "ours-dump", *forward], check=True)
    if args.mode in ("all", "compare"):
        rows = compare(args)
        if any("max_abs" not in r or r["max_abs"] > args.tolerance for r in rows):
            raise SystemExit(1)


if __name__ == "__main__":
    main()
