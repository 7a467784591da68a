"""The official side of verify_invsr.py: the OFFICIAL InvSR sampler (zsyOAOA/InvSR) run as released,
on the CPU in fp32 with the posterior means. Runs in the official venv only (see verify_invsr.py).

What is patched (at run time; no official file is edited):
  * DiagonalGaussianDistribution.sample (src/diffusers/models/autoencoders/vae.py) returns self.mean.
    It is the only sampler of both posteriors: NoisePredictor.forward(sample_posterior=True) and the
    pipeline's retrieve_latents(vae.encode(...), sample_mode="sample"). (The Euler step's own randn is
    only added when gamma > 0; s_churn = 0 gives gamma = 0, so it is drawn and unused: no patch needed.)
  * BaseSampler.build_model: "cuda" -> "cpu" in its three device places (sd_pipe.to, model_start.cuda(),
    torch.load map_location); the source is otherwise unchanged and re-compiled in the module.
  * InvSamplerSR.sample_func: the two `im_cond.type(torch.float16)` / `im_lq_pch.type(torch.float16)`
    casts of the LR fed to the pipeline become float32 (fp32 verification; on CPU without autocast an fp16
    image would not even run through the fp32 noise predictor). Nothing else in sample_func changes, so
    its pad multiple mod_lq is the official one, derived from the loaded VAE and UNet configs.
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
import os
import sys
import types
from pathlib import Path

import numpy as np
from verify_common import Recorder, case_name, selected_cases


def _install_stubs() -> list[str]:
    """Placeholders for imports that the official single-image inference path never uses, only when
    the real module cannot be imported. Any use of a placeholder raises."""
    import importlib

    def refuse(name):
        def fail(*args, **kwargs):
            raise RuntimeError(f"{name} is a verify_invsr.py placeholder, not meant to be reached")

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


def _mod_lq(pipe, sf: int) -> int:
    """sample_func's pad multiple, restated only to print which one this run exercises."""
    vae_sf = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    return vae_sf // sf * 2 ** (len(pipe.unet.config.block_out_channels) - 1)


def run_official(args) -> None:
    """Each selected case through InvSamplerSR.sample_func; writes work/official/<case>.npy (float32)."""
    import torch
    from omegaconf import OmegaConf

    inference_invsr, sampler_invsr = _official_setup(Path(args.official_repo).resolve(), args.threads)
    from utils import util_image

    work = Path(args.work)
    out = work / "official"
    out.mkdir(parents=True, exist_ok=True)
    tiny = OmegaConf.load(args.np_config).model_start.params
    for image, steps, color_fix in selected_cases(args.cases):
        name = case_name(image, steps, color_fix)
        # The official command line, through the official get_configs().
        cli = argparse.Namespace(
            in_path=str(work / "lr" / f"{image}.png"), out_path=str(out), bs=1, chopping_bs=8,
            timesteps=None, num_steps=steps, cfg_path=str(Path(args.official_repo) / "configs/sample-sd-turbo.yaml"),
            sd_path=str(args.hub), started_ckpt_path=str(args.np_ckpt), tiled_vae=True,
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
        print(f"official {name}: timesteps {list(configs.timesteps)}, mod_lq "
              f"{_mod_lq(sampler.sd_pipe, configs.basesr.sf)} -> {result.shape}", flush=True)
