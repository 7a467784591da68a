"""The official S3Diff inference (ArcticHare105/S3Diff ``src/inference_s3diff.py`` with ``src/s3diff_tile.py``), run on
the CPU in fp32 for verify_s3diff.py. Runs in the OFFICIAL venv (diffusers 0.25.1, peft 0.10.0, transformers
4.35.2: the repository's pins), with ``--repo`` naming the extracted repository.

What is stubbed at import (nothing of it runs on the inference path):

- ``torchvision`` (no CPU build matches torch 2.13): ``basicsr.archs.arch_util`` imports it for deformable
  convolutions only; ``transforms.ToTensor`` / ``ToPILImage``, which the script and the colour fix use, are
  restated with torchvision's semantics (``pic.float().div(255)``; ``pic.mul(255).byte()``, which truncates);
- ``basicsr.ops.dcn`` and ``basicsr.utils`` (deformable-convolution ops and a logger, imported by ``arch_util``;
  the package ``basicsr/__init__`` and ``basicsr.archs/__init__`` import every architecture, so ``arch_util`` is
  loaded from its file under its own name).

What is patched at run time, and why:

- ``Module.cuda`` / ``Tensor.cuda`` return themselves, and ``Module.to`` / ``Tensor.to`` / ``torch.tensor`` map
  ``"cuda"`` to the CPU: S3Diff moves everything to CUDA unconditionally;
- ``DiagonalGaussianDistribution.sample`` returns ``mean + std * noise`` with sr-export's noise contract (zeros,
  i.e. the posterior mean, or one ``numpy.random.default_rng(seed)`` draw per image) instead of torch's global
  generator; the DDPM step's variance noise (sqrt(1e-20) * randn) is left as it is;
- the LR image is read with Pillow (``/255`` in float32: the same values as the official cv2 reader for PNGs);
- the last ``ToPILImage`` keeps a float32 copy of its input: the [0, 1] result before the 8-bit rounding.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO_DEFAULT = Path("/tmp/s3diff_official")


class _ToTensor:
    def __call__(self, pic: Image.Image) -> torch.Tensor:
        array = np.asarray(pic, dtype=np.uint8)
        return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous().float().div(255)


class _ToPILImage:
    last_input: np.ndarray | None = None

    def __call__(self, pic: torch.Tensor) -> Image.Image:
        _ToPILImage.last_input = pic.detach().float().cpu().numpy().copy()
        array = pic.mul(255).byte().permute(1, 2, 0).cpu().numpy()
        return Image.fromarray(array, "RGB")


def _module(name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    sys.modules[name] = module
    return module


def install_stubs(repo: Path) -> None:
    import diffusers  # noqa: F401  (they probe for torchvision when imported: before the stub exists)
    import peft  # noqa: F401
    import transformers  # noqa: F401

    _module("torchvision", __version__="0.0")
    _module("torchvision.transforms", ToTensor=_ToTensor, ToPILImage=_ToPILImage)
    sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
    _module("basicsr", __path__=[str(repo / "basicsr")])
    _module("basicsr.archs", __path__=[str(repo / "basicsr" / "archs")])
    _module("basicsr.ops", __path__=[])
    _module("basicsr.ops.dcn", ModulatedDeformConvPack=torch.nn.Module, modulated_deform_conv=None)
    _module("basicsr.utils", get_root_logger=None)
    spec = importlib.util.spec_from_file_location("basicsr.archs.arch_util", repo / "basicsr" / "archs" / "arch_util.py")
    arch_util = importlib.util.module_from_spec(spec)
    sys.modules["basicsr.archs.arch_util"] = arch_util
    spec.loader.exec_module(arch_util)
    sys.path[:0] = [str(repo), str(repo / "src")]


def _cpu(device):
    return "cpu" if device is not None and "cuda" in str(device) else device


def patch_cuda() -> None:
    torch.nn.Module.cuda = lambda self, *a, **k: self
    torch.Tensor.cuda = lambda self, *a, **k: self
    module_to, tensor_to, make_tensor = torch.nn.Module.to, torch.Tensor.to, torch.tensor

    def module_to_cpu(self, *args, **kwargs):
        return module_to(self, *(_cpu(a) if isinstance(a, str | torch.device) else a for a in args),
                         **{k: _cpu(v) if k == "device" else v for k, v in kwargs.items()})

    def tensor_to_cpu(self, *args, **kwargs):
        return tensor_to(self, *(_cpu(a) if isinstance(a, str | torch.device) else a for a in args),
                         **{k: _cpu(v) if k == "device" else v for k, v in kwargs.items()})

    torch.nn.Module.to = module_to_cpu
    torch.Tensor.to = tensor_to_cpu
    torch.tensor = lambda *a, **k: make_tensor(*a, **{key: _cpu(v) if key == "device" else v for key, v in k.items()})


def patch_posterior(seed: int | None) -> None:
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    def sample(self, generator=None):
        if seed is None:
            return self.mean
        noise = np.random.default_rng(seed).standard_normal(tuple(self.mean.shape), dtype=np.float32)
        return self.mean + self.std * torch.from_numpy(noise)

    DiagonalGaussianDistribution.sample = sample


def run(args: argparse.Namespace) -> np.ndarray:
    """inference_s3diff.main's loop body for one image (batch 1), without accelerate or the metrics."""
    import math

    import torch.nn.functional as F
    from de_net import DEResNet
    from s3diff_tile import S3Diff
    from torchvision import transforms
    from utils.wavelet_color import wavelet_color_fix

    net_sr = S3Diff(lora_rank_unet=args.lora_rank_unet, lora_rank_vae=args.lora_rank_vae, sd_path=args.sd_path,
                    pretrained_path=args.pretrained_path, args=args)
    net_sr.set_eval()
    net_de = DEResNet(num_in_ch=3, num_degradation=2)
    net_de.load_model(args.de_net_path)
    net_de.eval()

    pixels = np.asarray(Image.open(args.input).convert("RGB"), dtype=np.float32) / np.float32(255)
    im_lr = torch.from_numpy(pixels).permute(2, 0, 1)[None].contiguous()
    ori_h, ori_w = im_lr.shape[2:]
    im_lr_resize = F.interpolate(im_lr, size=(ori_h * 4, ori_w * 4), mode="bilinear", align_corners=False)
    im_lr_resize = im_lr_resize.contiguous()
    im_lr_resize_norm = torch.clamp(im_lr_resize * 2 - 1.0, -1.0, 1.0)
    resize_h, resize_w = im_lr_resize_norm.shape[2:]
    pad_h = (math.ceil(resize_h / 64)) * 64 - resize_h
    pad_w = (math.ceil(resize_w / 64)) * 64 - resize_w
    im_lr_resize_norm = F.pad(im_lr_resize_norm, pad=(0, pad_w, 0, pad_h), mode="reflect")
    with torch.no_grad():
        deg_score = net_de(im_lr)
        x_tgt_pred = net_sr(im_lr_resize_norm, deg_score, pos_prompt=[args.pos_prompt], neg_prompt=[args.neg_prompt])
        x_tgt_pred = x_tgt_pred[:, :, :resize_h, :resize_w]
        out_img = (x_tgt_pred * 0.5 + 0.5).cpu().detach()
    output_pil = transforms.ToPILImage()(out_img[0])
    if args.align_method == "wavelet":
        im_lr_resize = transforms.ToPILImage()(im_lr_resize[0].cpu().detach())
        wavelet_color_fix(output_pil, im_lr_resize)
    return _ToPILImage.last_input.transpose(1, 2, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", type=Path, default=REPO_DEFAULT)
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True, help=".npy: the float image before 8-bit rounding")
    parser.add_argument("--sd-path", dest="sd_path", required=True)
    parser.add_argument("--pretrained-path", dest="pretrained_path", required=True)
    parser.add_argument("--de-net-path", dest="de_net_path", required=True)
    parser.add_argument("--lora-rank-unet", dest="lora_rank_unet", type=int, default=32)
    parser.add_argument("--lora-rank-vae", dest="lora_rank_vae", type=int, default=16)
    parser.add_argument("--latent-tiled-size", dest="latent_tiled_size", type=int, default=96)
    parser.add_argument("--latent-tiled-overlap", dest="latent_tiled_overlap", type=int, default=32)
    parser.add_argument("--vae-encoder-tiled-size", dest="vae_encoder_tiled_size", type=int, default=1024)
    parser.add_argument("--vae-decoder-tiled-size", dest="vae_decoder_tiled_size", type=int, default=224)
    parser.add_argument("--align-method", dest="align_method", default="wavelet", choices=["wavelet", "nofix"])
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    args.pos_prompt = ("A high-resolution, 8K, ultra-realistic image with sharp focus, vibrant colors, and natural "
                       "lighting.")
    args.neg_prompt = ("oil painting, cartoon, blur, dirty, messy, low quality, deformation, low resolution, "
                       "oversmooth")
    torch.set_num_threads(args.threads)
    install_stubs(args.repo.resolve())
    patch_cuda()
    patch_posterior(args.seed)
    np.save(args.output, run(args).astype(np.float32))
    print(f"official: wrote {args.output}")


if __name__ == "__main__":
    main()
