"""The official OSEDiff inference (cswry/OSEDiff ``test_osediff.py`` -> ``osediff.py:OSEDiff_test``, with
``my_utils/vaehook.py``'s tiled VAE, ``my_utils/wavelet_color_fix.py`` and RAM + DAPE from ``ram/``), run on the CPU in
fp32 as the ground truth for sr-export's port. Runs in the OFFICIAL venv; ``--repo`` names the extracted repository.

``test_osediff.py`` itself runs (``runpy``, as ``__main__``, with its own argument parser fed ``--mixed_precision
fp32`` and our paths), so its preprocessing, prompt, tiling and colour fixes are the official lines, not a restatement.
Several ``--input`` files become one folder of links (the official globs ``*.png`` in a folder, sorted).

Official venv (/tmp/osediff-official-venv, Python 3.11; the RAM pins are in official_osediff_ram.py), plus::

    pip install diffusers==0.25.0 peft==0.9.0 "huggingface_hub<0.26" accelerate==0.27.2 einops==0.7.0

(requirements.txt pins diffusers 0.25.0, peft 0.9.0, einops 0.7.0; diffusers 0.25 imports ``cached_download``, gone
from huggingface_hub 0.26; peft 0.9.0 needs accelerate, 0.27.2 is of its time.)

Stubs and staging (nothing in ``--repo`` is written):

- ``ram/`` is copied to ``<out>/_staged/ram`` (first on ``sys.path``); with ``--ram-configs`` (a JSON object
  {path under ram/configs/: config}, e.g. ``TinyRamSizes.official_configs()``) its JSON configs are replaced, and
  its tag files come from ``--ram-data`` (ram_tag_list.txt, ram_tag_list_threshold.txt, and the Chinese list, the
  English one where absent);
- ``ram.models.ram_lora.init_tokenizer`` returns official_osediff_ram's stand-in of med_config's vocabulary size
  (the official loads bert-base-uncased from a hard-coded path; RAM only takes its length and a token count).

Run-time patches, and why:

- ``.cuda()`` returns its object; ``Module.to`` / ``Tensor.to`` / ``torch.tensor`` map ``"cuda"`` to the CPU
  (official_s3diff.patch_cuda): ``OSEDiff_test``, ``test_osediff.py`` and vaehook's ``devices.device`` name CUDA;
- ``DiagonalGaussianDistribution.sample`` is sr-export's noise contract: ``mean`` (no ``--seed``) or ``mean + std *
  numpy.random.default_rng(seed).standard_normal(shape, float32)``; torch's global generator is seeded with 0 for
  the DDPM step's variance noise (sqrt(1e-20) * randn, added at t = 999: see scripts/README.md);
- ``ModelMixin.merge_and_unload`` (only with ``--merge-and-unload-lora``): diffusers 0.25 models have none, so the
  official flag raises AttributeError; this one merges every PEFT LoRA layer (``BaseTunerLayer.merge``) and puts
  its base layer in its place, as peft's ``LoraModel.merge_and_unload`` does;
- recording only: ``ToPILImage.__call__`` keeps a float32 copy of its input; RAM's ``fc``, the text encoder,
  ``DDPMScheduler.step``, ``OSEDiff_test.forward``, the UNet and ``VAEHook.split_tiles`` are read by hooks.

Outputs in ``--out``: ``<name>.png`` (the official save), ``txt/<stem>.txt`` (the official prompt file) and a copy
``<stem>.txt``, ``<stem>.npy`` (C, H, W float32 in [0, 1]: the last ``ToPILImage`` input, i.e. the colour-fixed
image before 8-bit truncation), and with ``--dump`` ``<stem>_dump.npz``: tagger_input (1,3,384,384), tag_probs,
prompt_ids, prompt_embeds, latent (scaled, the UNet input), eps, x0 (the DDPM step's output), decoded (the clamped
VAE output in [-1, 1]), before_fix (the first ``ToPILImage`` input), lq (the model input in [-1, 1]).
"""

from __future__ import annotations

import argparse
import json
import runpy
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from official_osediff_ram import _StandInTokenizer  # noqa: E402
from official_s3diff import patch_cuda, patch_posterior  # noqa: E402

REPO_DEFAULT = Path("/tmp/osediff_official")
TAG_FILES = ("ram_tag_list.txt", "ram_tag_list_threshold.txt")


class Recorder:
    """What one image's hooks saw; flushed to ``--out`` when the official saves the PNG."""

    def __init__(self, out: Path, dump: bool):
        self.out, self.dump = out, dump
        self.reset()

    def reset(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.pil_inputs: list[np.ndarray] = []
        self.tiles: list[str] = []
        self.unet_calls = 0
        self.start = time.perf_counter()

    def keep(self, name: str, tensor: torch.Tensor) -> None:
        tensor = tensor.detach().cpu()  # prompt ids stay integers
        self.arrays[name] = (tensor.float() if tensor.is_floating_point() else tensor).numpy().copy()

    def flush(self, png: Path) -> None:
        stem = png.name.split(".")[0]  # test_osediff.py's txt name
        np.save(self.out / f"{stem}.npy", self.pil_inputs[-1].astype(np.float32))
        shutil.copy(self.out / "txt" / f"{stem}.txt", self.out / f"{stem}.txt")
        if self.dump:
            np.savez(self.out / f"{stem}_dump.npz", before_fix=self.pil_inputs[0], **self.arrays)
        c, h, w = self.pil_inputs[-1].shape
        print(f"[official_osediff] {png.name}: output {w}x{h} (WxH), {time.perf_counter() - self.start:.1f} s; "
              f"UNet calls {self.unet_calls}; VAE: {'; '.join(self.tiles) or 'untiled'}")
        self.reset()


def stage_ram(repo: Path, staged: Path, configs: Path | None, data: Path) -> int:
    """Copy ``ram/`` with the given configs and tag files; returns med_config's vocabulary size."""
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(repo / "ram", staged / "ram")
    for name, config in (json.loads(configs.read_text()) if configs else {}).items():
        (staged / "ram" / "configs" / name).write_text(json.dumps(config, indent=2))
    for name in TAG_FILES:
        shutil.copy(data / name, staged / "ram" / "data" / name)
    chinese = data / "ram_tag_list_chinese.txt"
    shutil.copy(chinese if chinese.exists() else data / TAG_FILES[0], staged / "ram" / "data" / chinese.name)
    return json.loads((staged / "ram" / "configs" / "med_config.json").read_text())["vocab_size"]


def patch_merge_and_unload() -> None:
    from diffusers.models.modeling_utils import ModelMixin
    from peft.tuners.tuners_utils import BaseTunerLayer

    def merge_and_unload(self):
        for name, module in list(self.named_modules()):
            if isinstance(module, BaseTunerLayer):
                module.merge()
                parent, _, child = name.rpartition(".")
                setattr(self.get_submodule(parent), child, module.get_base_layer())
        return self

    ModelMixin.merge_and_unload = merge_and_unload


def install_hooks(record: Recorder) -> None:
    import osediff
    import ram
    import ram.models.ram_lora as ram_lora
    from diffusers import DDPMScheduler
    from my_utils.vaehook import VAEHook
    from PIL import Image
    from torchvision import transforms

    official_inference, official_ram = ram.inference_ram, ram_lora.ram

    def inference_ram(image, model):  # the first step of each image
        record.reset()
        record.keep("tagger_input", image)
        return official_inference(image, model)

    def build_ram(*args, **kwargs):
        model = official_ram(*args, **kwargs)
        model.fc.register_forward_hook(lambda m, i, o: record.keep("tag_probs", torch.sigmoid(o.squeeze(-1))))
        return model

    ram.inference_ram, ram_lora.ram = inference_ram, build_ram

    official_init, official_forward = osediff.OSEDiff_test.__init__, osediff.OSEDiff_test.forward

    def init(self, args):
        official_init(self, args)
        print(f"[official_osediff] AutoTokenizer gave {type(self.tokenizer).__name__}; UNet {type(self.unet).__name__}")

        def text_hook(module, inputs, output):  # a hook's return value would replace the output
            record.keep("prompt_ids", inputs[0])
            record.keep("prompt_embeds", output[0])

        self.text_encoder.register_forward_hook(text_hook)
        self.unet.register_forward_hook(lambda m, i, o: setattr(record, "unet_calls", record.unet_calls + 1))

    def forward(self, lq, prompt):
        record.keep("lq", lq)
        output = official_forward(self, lq, prompt)
        record.keep("decoded", output)
        return output

    osediff.OSEDiff_test.__init__, osediff.OSEDiff_test.forward = init, forward

    official_step = DDPMScheduler.step

    def step(self, model_output, timestep, sample, *args, **kwargs):
        result = official_step(self, model_output, timestep, sample, *args, **kwargs)
        record.keep("latent", sample)
        record.keep("eps", model_output)
        record.keep("x0", result.prev_sample)
        return result

    DDPMScheduler.step = step

    official_split = VAEHook.split_tiles

    def split_tiles(self, h, w):
        boxes = official_split(self, h, w)
        record.tiles.append(f"{'decoder' if self.is_decoder else 'encoder'} {h}x{w} in {len(boxes[0])} tiles")
        return boxes

    VAEHook.split_tiles = split_tiles

    official_to_pil = transforms.ToPILImage.__call__

    def to_pil(self, pic):
        record.pil_inputs.append(pic.detach().float().cpu().numpy().copy())
        return official_to_pil(self, pic)

    transforms.ToPILImage.__call__ = to_pil
    official_save = Image.Image.save

    def save(self, fp, *args, **kwargs):
        official_save(self, fp, *args, **kwargs)
        if isinstance(fp, str | Path) and Path(fp).parent.resolve() == record.out.resolve():
            record.flush(Path(fp))

    Image.Image.save = save


def official_argv(args: argparse.Namespace, input_path: Path) -> list[str]:
    argv = ["test_osediff.py", "--input_image", str(input_path), "--output_dir", str(args.out),
            "--pretrained_model_name_or_path", str(args.sd21), "--osediff_path", str(args.osediff),
            "--ram_path", str(args.ram), "--ram_ft_path", str(args.dape), "--align_method", args.align_method,
            "--prompt", args.prompt, "--mixed_precision", "fp32",
            "--latent_tiled_size", str(args.latent_tiled_size),
            "--latent_tiled_overlap", str(args.latent_tiled_overlap),
            "--vae_encoder_tiled_size", str(args.vae_encoder_tiled_size),
            "--vae_decoder_tiled_size", str(args.vae_decoder_tiled_size)]
    if args.merge_and_unload_lora:  # the official option has no type: any string is true, only absence is false
        argv += ["--merge_and_unload_lora", "True"]
    return argv


def input_path(inputs: list[Path], staged: Path) -> Path:
    if len(inputs) == 1:
        return inputs[0]
    folder = staged / "inputs"
    folder.mkdir(parents=True)
    for image in inputs:
        if image.suffix != ".png":
            raise SystemExit(f"{image}: with several inputs the official reads *.png only")
        (folder / image.name).symlink_to(image)
    return folder


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", type=Path, default=REPO_DEFAULT, help="the extracted cswry/OSEDiff")
    parser.add_argument("--sd21", type=Path, required=True, help="the SD-2.1-base diffusers folder")
    parser.add_argument("--osediff", type=Path, required=True, help="osediff.pkl")
    parser.add_argument("--ram", type=Path, required=True, help="ram_swin_large_14m.pth")
    parser.add_argument("--dape", type=Path, required=True, help="DAPE.pth")
    parser.add_argument("--ram-data", type=Path, required=True, help="folder of the tag list and threshold files")
    parser.add_argument("--ram-configs", type=Path, help="JSON {name under ram/configs/: config} (tiny RAM)")
    parser.add_argument("--input", type=Path, nargs="+", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=None, help="posterior noise seed (default: the mean)")
    parser.add_argument("--align-method", choices=["adain", "wavelet", "nofix"], default="adain")
    parser.add_argument("--prompt", default="")
    parser.add_argument("--merge-and-unload-lora", action="store_true")
    parser.add_argument("--latent-tiled-size", type=int, default=96)
    parser.add_argument("--latent-tiled-overlap", type=int, default=32)
    parser.add_argument("--vae-encoder-tiled-size", type=int, default=1024)
    parser.add_argument("--vae-decoder-tiled-size", type=int, default=224)
    parser.add_argument("--dump", action="store_true", help="also save the intermediates (<stem>_dump.npz)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    for name in ("repo", "sd21", "osediff", "ram", "dape", "ram_data", "out"):
        setattr(args, name, getattr(args, name).resolve())
    args.input = [path.resolve() for path in args.input]
    return args


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    staged = args.out / "_staged"
    args.out.mkdir(parents=True, exist_ok=True)
    vocabulary = stage_ram(args.repo, staged, args.ram_configs, args.ram_data)
    sys.path[:0] = [str(staged), str(args.repo)]
    import ram.models.ram_lora as ram_lora

    ram_lora.init_tokenizer = lambda *a, **k: _StandInTokenizer(vocabulary)
    patch_cuda()
    patch_posterior(args.seed)
    if args.merge_and_unload_lora:
        patch_merge_and_unload()
    install_hooks(Recorder(args.out, args.dump))
    torch.manual_seed(0)
    sys.argv = official_argv(args, input_path(args.input, staged))
    start = time.perf_counter()
    runpy.run_path(str(args.repo / "test_osediff.py"), run_name="__main__")
    print(f"[official_osediff] done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
