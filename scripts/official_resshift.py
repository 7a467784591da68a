"""The official ResShift / SinSR samplers, run on the CPU in fp32 with the noise contract (for
verify_resshift.py; runs in the OFFICIAL venv, one repository per process: both name their modules
``sampler``, ``models``, ``ldm``, ``utils``).

What is stubbed at import (nothing of it runs on the inference path):

- ``timm.models.layers`` (the Swin module imports ``DropPath``, ``to_2tuple``, ``trunc_normal_``; timm needs
  torchvision, which has no CPU build matching torch 2.13): identity drop path (drop_path is 0),
  the pair helper and torch's own truncated normal (init only, the weights are loaded after);
- ``datapipe.datasets`` (training datasets, imported by both samplers; folder inputs only);
- ``torchvision.utils.save_image`` (SinSR imports it at module level, never calls it for inference).

What is patched at run time, and why:

- ``Module.cuda`` / ``Tensor.cuda`` return themselves and ``torch.load`` maps to the CPU: the samplers
  move everything to CUDA unconditionally;
- ResShift is built with ``use_amp=False`` (its CLI's ``use_amp=True`` is CUDA autocast) and SinSR with
  ``use_fp16=False`` and ``autoencoder.use_fp16 = False`` (its CLI halves the UNet torso and the
  autoencoder): the comparison is fp32;
- SinSR's ``setup_dist`` asserts exactly one GPU: replaced by the single-process values it would set;
- ``torch.randn_like`` (the only source of noise in ``p_sample_loop``: the prior, then one draw per
  ``p_sample``) draws ``rng.standard_normal(shape).astype(float32)`` from one ``numpy.random.default_rng
  (seed)`` per image (or zeros for --zero-noise): sr-export's noise contract;
- ``util_image.tensor2img`` keeps a float32 copy of the image it is given (the [0, 1] result before the
  8-bit rounding), which is what is compared.
"""

from __future__ import annotations

import contextlib
import sys
import types
from pathlib import Path

import numpy as np
import torch


def _stub(name: str, **attributes) -> None:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    sys.modules[name] = module


def _pair(value):
    return tuple(value) if isinstance(value, (list, tuple)) else (value, value)


def install_stubs() -> None:
    _stub("timm")
    _stub("timm.models")
    _stub("timm.models.layers", DropPath=lambda p: torch.nn.Identity(), to_2tuple=_pair,
          trunc_normal_=torch.nn.init.trunc_normal_)
    _stub("datapipe")
    _stub("datapipe.datasets", create_dataset=None)
    _stub("torchvision")
    _stub("torchvision.utils", save_image=None)


class NoiseContract:
    """Replaces torch.randn_like while active: the draws of one image, in call order."""

    def __init__(self, seed: int | None):
        self.rng = None if seed is None else np.random.default_rng(seed)
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, like: torch.Tensor, **_kwargs) -> torch.Tensor:
        shape = tuple(like.shape)
        self.shapes.append(shape)
        if self.rng is None:
            return torch.zeros(shape, dtype=like.dtype)
        return torch.from_numpy(self.rng.standard_normal(shape).astype(np.float32)).to(like.dtype)


@contextlib.contextmanager
def _patched(obj, name: str, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def cpu_patches(stack: contextlib.ExitStack) -> None:
    load = torch.load
    stack.enter_context(_patched(torch.nn.Module, "cuda", lambda self, *a, **k: self))
    stack.enter_context(_patched(torch.Tensor, "cuda", lambda self, *a, **k: self))
    stack.enter_context(_patched(torch, "load", lambda path, map_location=None, **k: load(path, map_location="cpu", **k)))


class OfficialRun:
    """One repository's sampler, built once per (config, weights, chopping) and run per image."""

    def __init__(self, repo: Path, code: str, config: Path, denoiser: Path, autoencoder: Path):
        install_stubs()
        sys.path.insert(0, str(repo))
        from omegaconf import OmegaConf

        self.code = code
        self.configs = OmegaConf.load(str(config))
        self.configs.model.ckpt_path = str(denoiser)
        self.configs.autoencoder.ckpt_path = str(autoencoder)
        self.configs.diffusion.params.sf = 4  # both CLIs set it from --scale (default 4)
        if code == "sinsr":
            self.configs.autoencoder.use_fp16 = False
            self.configs.diffusion.params.timestep_respacing = self.configs.diffusion.params.steps  # --infer_steps
        self.captured: list[np.ndarray] = []

    def _sampler(self, chop_size: int, chop_stride: int, seed: int):
        import sampler

        if self.code == "resshift":
            padding = self.configs.model.params.get("lq_size", 64)  # as inference_resshift.py passes it
            return sampler.ResShiftSampler(self.configs, sf=4, chop_size=chop_size, chop_stride=chop_stride,
                                           chop_bs=1, use_amp=False, seed=seed, padding_offset=padding)

        def single_process(self, gpu_id=None):
            self.num_gpus, self.rank = 1, 0

        sampler.BaseSampler.setup_dist = single_process
        return sampler.Sampler(self.configs, chop_size=chop_size, chop_stride=chop_stride, chop_bs=1,
                               use_fp16=False, seed=seed, ddim=False)

    def upscale(self, image: Path, out_dir: Path, chop_size: int, chop_stride: int, seed: int | None) -> np.ndarray:
        """The official result of ``image`` (H,W,3) float32 in [0, 1], and the noise draws' shapes."""
        import sampler

        original = sampler.util_image.tensor2img

        def capture(tensor, *args, **kwargs):
            self.captured.append(tensor.detach().float().cpu().clone().numpy())
            return original(tensor, *args, **kwargs)

        noise = NoiseContract(seed)
        with contextlib.ExitStack() as stack:
            cpu_patches(stack)
            stack.enter_context(_patched(sampler.util_image, "tensor2img", capture))
            stack.enter_context(_patched(torch, "randn_like", noise))
            run = self._sampler(chop_size, chop_stride, 12345 if seed is None else seed)
            torch.set_grad_enabled(False)
            if self.code == "resshift":
                run.inference(image, out_dir, mask_path=None, bs=1, noise_repeat=False)
            else:
                run.inference(image, out_dir, bs=1, noise_repeat=False, one_step=True)
        self.draw_shapes = noise.shapes
        return self.captured.pop()[0].transpose(1, 2, 0)
