#!/usr/bin/env python3
"""Check `sr-export upscale --backend torch` against the OFFICIAL InvSR sampler, run for real.

Both sides load the same (tiny, seeded) weights in the official file formats, run in fp32 on the
CPU with the posterior MEANS (no noise), and upscale the same 8-bit PNGs; the script reports the
max-abs difference and PSNR of the two float32 outputs per case, and can dump the intermediate
tensors of both sides (prompt embedding, noise-predictor moments, VAE moments, UNet inputs/outputs,
decoder input/output) to find the first stage that differs.

Setup (commands that worked; CPU only, ~5 min, Python 3.11):

    # 1. the official code (public repo zsyOAOA/InvSR, commit 609788cd, 2026-02-08); from a bare mirror:
    mkdir -p /tmp/invsr-official && git --git-dir=MIRROR archive HEAD | tar -x -C /tmp/invsr-official
    #    (a mirror with missing blobs makes `git archive` fail; then write each blob of
    #    `git ls-tree -r HEAD` with `git cat-file blob`: only assets/*.png were missing here)

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
    #    inference path does not use it; see _install_stubs() for the three imports stubbed instead.

    # 3. tiny checkpoints in the official formats (in the sr-export venv)
    . /work/main/.venv/bin/activate && python -c "from sr_export.tiny_checkpoints import \
        write_tiny_sd_turbo, write_tiny_noise_predictor; from pathlib import Path; \
        write_tiny_sd_turbo(Path('/tmp/verify/hub'), seed=3, hub_layout=True); \
        write_tiny_sd_turbo(Path('/tmp/verify/sd-turbo'), seed=3); \
        print(write_tiny_noise_predictor(Path('/tmp/verify/np'), seed=3))"

Run (in the OFFICIAL venv; our side runs as a subprocess through the `sr-export` CLI of our venv):

    /tmp/official-venv/bin/python scripts/verify_official.py all \
        --official-repo /tmp/invsr-official --work /tmp/verify/run \
        --sr-export /work/main/.venv/bin/sr-export [--dump]

Other modes: `images` (write the LR PNGs), `official` (official side only), `ours` (our CLI only),
`ours-dump` (our side's intermediates; run with our venv's python), `compare` (table from saved
outputs). `--dump` also writes both sides' intermediates (npz per case) and compares them stage by stage.

What is patched on the official side (at run time; no official file is edited):
  * DiagonalGaussianDistribution.sample (src/diffusers/models/autoencoders/vae.py) returns self.mean.
    It is the only sampler of both posteriors: NoisePredictor.forward(sample_posterior=True) and the
    pipeline's retrieve_latents(vae.encode(...), sample_mode="sample"). (The Euler step's own randn is
    only added when gamma > 0; s_churn = 0 gives gamma = 0, so it is drawn and unused: no patch needed.)
  * BaseSampler.build_model: "cuda" -> "cpu" in its three device places (sd_pipe.to, model_start.cuda(),
    torch.load map_location); the source is otherwise unchanged and re-compiled in the module.
  * InvSamplerSR.sample_func: the two `im_cond.type(torch.float16)` / `im_lq_pch.type(torch.float16)`
    casts of the LR fed to the pipeline become float32 (fp32 verification; on CPU without autocast an fp16
    image would not even run through the fp32 noise predictor). Nothing else in sample_func changes.
  * config: sd_pipe.params.torch_dtype = torch.float32 (a config value the official code supports),
    cache_dir = the tiny hub cache, model_start.params = the tiny YAML's, via the official get_configs().
  * torch.amp.autocast('cuda') in the pipeline is left alone: without CUDA torch disables it (warning).
  * imports never reached on this path are stubbed (torchvision's ToTensor/ToPILImage, the training
    datapipe, basicsr's downloader): see _install_stubs(); a stub raises if it is ever called.

Weights: the official side reads the tiny hub cache as written (its text encoder keys carry the released
`text_model.` prefix, which transformers 4.46 needs: without it it silently keeps a random encoder).
After building the sampler, check_loaded_weights() asserts that every UNet / VAE / text-encoder /
noise-predictor tensor the official code holds equals the one in our side's files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np

# name -> (height, width) of the LR image
IMAGES = {
    "h128w128": (128, 128),  # exactly one tile: one pipeline call
    "h64w80": (64, 80),  # small: centred reflect padding to 128x128, one call, then crop
    "h200w150": (200, 150),  # chopping: padded to 208x160, 3x2 tiles of 128 at stride 64, Gaussian blend
}
# (image, steps, colour fix); default timesteps: 1 -> [200], 3 -> [200, 100, 50]
CASES = [
    ("h128w128", 1, None),
    ("h128w128", 3, None),
    ("h64w80", 1, None),
    ("h64w80", 3, None),
    ("h200w150", 1, None),
    ("h200w150", 3, None),
    ("h64w80", 1, "wavelet"),
    ("h64w80", 1, "ycbcr"),
    ("h200w150", 3, "wavelet"),
    ("h200w150", 3, "ycbcr"),
]
STAGES = ("text", "np_moments", "vae_moments", "unet_in", "unet_t", "unet_out", "dec_in", "dec_out")


def case_name(image: str, steps: int, color_fix: str | None) -> str:
    return f"{image}_s{steps}_{color_fix or 'none'}"


# ----------------------------------------------------------------------------- inputs


def make_images(folder: Path) -> None:
    """Deterministic 8-bit RGB PNGs: smooth colour ramps, a few sinusoids and some noise."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for index, (name, (h, w)) in enumerate(IMAGES.items()):
        rng = np.random.RandomState(100 + index)
        y, x = np.mgrid[0:h, 0:w].astype(np.float64)
        channels = []
        for c in range(3):
            fy, fx, phase = rng.uniform(0.02, 0.2), rng.uniform(0.02, 0.2), rng.uniform(0, 2 * np.pi)
            ramp = (x / w) * (0.3 + 0.2 * c) + (y / h) * (0.5 - 0.15 * c)
            channels.append(0.35 * ramp + 0.3 + 0.2 * np.sin(fy * y + fx * x + phase))
        image = np.stack(channels, axis=2) + rng.normal(0, 0.04, (h, w, 3))
        pixels = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
        Image.fromarray(pixels, "RGB").save(folder / f"{name}.png")


# ----------------------------------------------------------------------------- recording hooks


class Recorder:
    """Forward hooks that keep float32 copies of the stage tensors, in call order."""

    def __init__(self):
        self.records: dict[str, list[np.ndarray]] = {name: [] for name in STAGES}
        self.handles = []

    def _put(self, name, tensor):
        self.records[name].append(tensor.detach().float().cpu().numpy().copy())

    def attach(self, text_encoder, np_conv_out, vae, unet):
        h = self.handles
        h.append(text_encoder.register_forward_hook(lambda m, a, o: self._put("text", o[0])))
        h.append(np_conv_out.register_forward_hook(lambda m, a, o: self._put("np_moments", o)))
        h.append(vae.quant_conv.register_forward_hook(lambda m, a, o: self._put("vae_moments", o)))

        def unet_hook(module, args, kwargs, output):
            self._put("unet_in", args[0])
            self._put("unet_t", args[1].reshape(-1))
            self._put("unet_out", output[0] if isinstance(output, tuple) else output.sample)

        h.append(unet.register_forward_hook(unet_hook, with_kwargs=True))
        h.append(vae.post_quant_conv.register_forward_hook(lambda m, a, o: self._put("dec_in", a[0])))
        h.append(vae.decoder.register_forward_hook(lambda m, a, o: self._put("dec_out", o)))

    def save(self, path: Path):
        arrays = {f"{name}_{i}": a for name, items in self.records.items() for i, a in enumerate(items)}
        np.savez(path, **arrays)

    def detach(self):
        for handle in self.handles:
            handle.remove()


# ----------------------------------------------------------------------------- official side


def _install_stubs() -> list[str]:
    """Placeholders for imports that the official single-image inference path never uses, only when
    the real module cannot be imported. Any use of a placeholder raises."""
    import importlib

    def refuse(name):
        def fail(*args, **kwargs):
            raise RuntimeError(f"{name} is a verify_official.py placeholder, not meant to be reached")

        return fail

    stubbed = []
    try:
        importlib.import_module("torchvision")
    except Exception:  # not installed, or a CUDA build that cannot load against the CPU torch
        # utils/util_color_fix.py imports ToTensor/ToPILImage for its PIL helpers (adain_color_fix,
        # wavelet_color_fix); the sampler calls wavelet_reconstruction / ycbcr_color_replace instead.
        for mod in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[mod]
        tv = types.ModuleType("torchvision")
        tv.transforms = types.ModuleType("torchvision.transforms")
        tv.transforms.ToTensor = refuse("torchvision.transforms.ToTensor")
        tv.transforms.ToPILImage = refuse("torchvision.transforms.ToPILImage")
        sys.modules["torchvision"] = tv
        sys.modules["torchvision.transforms"] = tv.transforms
        stubbed.append("torchvision.transforms.{ToTensor,ToPILImage}")
    # sampler_invsr imports create_dataset from the training data pipeline (basicsr, albumentations,
    # torchvision); it is only used by InvSamplerSR.inference for *folder* inputs.
    datasets = types.ModuleType("datapipe.datasets")
    datasets.create_dataset = refuse("datapipe.datasets.create_dataset")
    sys.modules["datapipe.datasets"] = datasets
    stubbed.append("datapipe.datasets.create_dataset")
    # inference_invsr imports basicsr's downloader for the noise-predictor weights; a path is given here.
    for name in ("basicsr", "basicsr.utils"):
        sys.modules.setdefault(name, types.ModuleType(name))
    download = types.ModuleType("basicsr.utils.download_util")
    download.load_file_from_url = refuse("basicsr.utils.download_util.load_file_from_url")
    sys.modules["basicsr.utils.download_util"] = download
    stubbed.append("basicsr.utils.download_util.load_file_from_url")
    return stubbed


def _patch_source(cls, name: str, replacements: list[tuple[str, str, int]]) -> None:
    """Re-compiles ``cls.name`` from its own source with exact, counted string replacements."""
    import inspect
    import textwrap

    source = textwrap.dedent(inspect.getsource(getattr(cls, name)))
    for old, new, count in replacements:
        found = source.count(old)
        if found != count:
            raise RuntimeError(f"{cls.__name__}.{name}: expected {count} x {old!r}, found {found}")
        source = source.replace(old, new)
    namespace: dict = {}
    module = sys.modules[cls.__module__]
    exec(compile(source, f"<{cls.__module__}.{cls.__name__}.{name}, patched>", "exec"), module.__dict__, namespace)
    setattr(cls, name, namespace[name])


def _official_setup(repo: Path, threads: int):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the hub cache is local; never ask the network
    sys.path.insert(0, str(repo))
    import torch

    torch.set_num_threads(threads)
    import diffusers  # before the stubs: diffusers probes find_spec("torchvision"), which a stub would confuse
    from diffusers.models.autoencoders import vae as vae_module

    stubbed = _install_stubs()

    if Path(diffusers.__file__).resolve().parent != (repo / "src" / "diffusers").resolve():
        raise SystemExit(f"diffusers is {diffusers.__file__}, not the official vendored copy under {repo}/src")

    def posterior_mean(self, generator=None):
        return self.mean

    vae_module.DiagonalGaussianDistribution.sample = posterior_mean

    import inference_invsr
    import sampler_invsr

    _patch_source(sampler_invsr.BaseSampler, "build_model", [
        ('sd_pipe.to(f"cuda")', 'sd_pipe.to(f"cpu")', 1),
        ("model_start.cuda()", "model_start.cpu()", 1),
        ('map_location=f"cuda"', 'map_location=f"cpu"', 1),
    ])
    _patch_source(sampler_invsr.InvSamplerSR, "sample_func", [
        (".type(torch.float16)", ".type(torch.float32)", 2),
    ])
    print(f"official: diffusers {diffusers.__version__} from {Path(diffusers.__file__).parent}; stubs: {stubbed}")
    return inference_invsr, sampler_invsr


def check_loaded_weights(pipe, sd_folder: Path, np_ckpt: Path) -> None:
    """Every parameter the official code loaded equals the tensor our side reads from its files."""
    import torch
    from safetensors.torch import load_file

    def strip(key):
        return key[len("text_model."):] if key.startswith("text_model.") else key

    sources = {
        "unet": (pipe.unet, load_file(sd_folder / "unet" / "diffusion_pytorch_model.safetensors")),
        "vae": (pipe.vae, load_file(sd_folder / "vae" / "diffusion_pytorch_model.safetensors")),
        "text_encoder": (pipe.text_encoder, load_file(sd_folder / "text_encoder" / "model.safetensors")),
        "noise_predictor": (pipe.start_noise_predictor, torch.load(np_ckpt, map_location="cpu")["state_dict"]),
    }
    for label, (module, reference) in sources.items():
        reference = {strip(k): v for k, v in reference.items()}
        params = {strip(k): v for k, v in module.state_dict().items()}
        missing = [k for k in params if k not in reference and not k.endswith("position_ids")]
        bad = [k for k in params if k in reference and not torch.equal(params[k].float(), reference[k].float())]
        if missing or bad or len(reference) > len(params):
            raise SystemExit(f"official {label}: {len(missing)} parameters not in our files, {len(bad)} differ")
    print(f"official weights: unet, vae, text encoder, noise predictor equal the files of {sd_folder} / {np_ckpt.name}")


def run_official(args) -> None:
    import torch
    from omegaconf import OmegaConf

    inference_invsr, sampler_invsr = _official_setup(Path(args.official_repo).resolve(), args.threads)
    from utils import util_image

    work = Path(args.work)
    out = work / "official"
    out.mkdir(parents=True, exist_ok=True)
    tiny = OmegaConf.load(args.np_config).model_start.params
    hub = args.hub
    for image, steps, color_fix in _selected(args):
        name = case_name(image, steps, color_fix)
        # The official command line, through the official get_configs().
        cli = argparse.Namespace(
            in_path=str(work / "lr" / f"{image}.png"), out_path=str(out), bs=1, chopping_bs=8,
            timesteps=None, num_steps=steps, cfg_path=str(Path(args.official_repo) / "configs/sample-sd-turbo.yaml"),
            sd_path=str(hub), started_ckpt_path=str(args.np_ckpt), tiled_vae=True,
            color_fix=color_fix or "", chopping_size=128,
        )
        configs = inference_invsr.get_configs(cli)
        configs.sd_pipe.params.torch_dtype = "torch.float32"
        configs.model_start.params = tiny
        sampler = sampler_invsr.InvSamplerSR(configs)
        check_loaded_weights(sampler.sd_pipe, args.sd_turbo, args.np_ckpt)
        recorder = None
        if args.dump:
            pipe = sampler.sd_pipe
            recorder = Recorder()
            recorder.attach(pipe.text_encoder, pipe.start_noise_predictor.encoder.conv_out, pipe.vae, pipe.unet)
        # InvSamplerSR.inference for a single image, minus the 8-bit PNG writing.
        im = util_image.imread(cli.in_path, chn="rgb", dtype="float32")
        np.save(out / f"{image}_input.npy", im)
        im_cond = util_image.img2tensor(im)
        with torch.no_grad():
            result = sampler.sample_func(im_cond).squeeze(0)
        np.save(out / f"{name}.npy", result.astype(np.float32))
        if recorder is not None:
            recorder.save(out / f"{name}_dump.npz")
        print(f"official {name}: timesteps {list(configs.timesteps)} -> {result.shape}", flush=True)


# ----------------------------------------------------------------------------- our side


def run_ours_cli(args) -> None:
    out = Path(args.work) / "ours"
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    for image, steps, color_fix in _selected(args):
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

    from sr_export.reference import InvSRReference, load_components
    from sr_export.schedule import build_schedule, resolve_timesteps
    from sr_runtime.images import read_image
    from sr_runtime.upscale import UpscaleSettings

    torch.set_num_threads(args.threads)
    out = Path(args.work) / "ours"
    out.mkdir(parents=True, exist_ok=True)
    for image, steps, color_fix in _selected(args):
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


# ----------------------------------------------------------------------------- comparison


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


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
    for image, steps, color_fix in _selected(args):
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


# ----------------------------------------------------------------------------- main


def _selected(args):
    wanted = set(args.cases.split(",")) if args.cases else None
    return [c for c in CASES if wanted is None or case_name(*c) in wanted]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.resolve().read_bytes()).hexdigest()


def check_same_weights(hub: Path, folder: Path) -> None:
    """The hub cache (official side) and the diffusers folder (our side) must hold identical files."""
    snapshot = next((hub / "models--stabilityai--sd-turbo" / "snapshots").iterdir())
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        for f in sorted((folder / sub).iterdir()):
            if _sha256(f) != _sha256(snapshot / sub / f.name):
                raise SystemExit(f"{sub}/{f.name} differs between {hub} and {folder}")
    print(f"weights: {folder} and the hub snapshot {snapshot.name} hold identical files")


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
