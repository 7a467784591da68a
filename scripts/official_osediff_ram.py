"""OSEDiff's tagger, official vs ours: the official RAM + DAPE code (cswry/OSEDiff ``ram/``, as ``test_osediff.py``
builds and calls it) and ``sr_export.families.osediff`` on the same tiny random official-format files, comparing the
per-class probabilities (max-abs) and the tag strings on several random images; exit 1 above the tolerance.

Run it with OUR venv; it runs its official half (``--official-side``) with the official venv's Python:

    /work/main/.venv/bin/python scripts/official_osediff_ram.py [--work /tmp/osediff-ram-compare]

For each of two tiny sizes (``TINY_RAM``: 4-stage Swin, 2 head layers; ``TINY_RAM_WIDE``: 3-stage Swin whose last stage
has shifted windows, 1 head layer, other widths), it writes RAM / DAPE / tag list / threshold files with
``write_random_ram``, copies the official ``ram/`` package out of the fetched repository (``--git-dir``), replaces its
three JSON configs by the ones matching the tiny sizes (``TinyRamSizes.official_configs``) and its tag files by the
tiny ones, and then on each image:

- official: ``lq_ram = ram_transforms(lq)`` with torchvision's ``Resize((384, 384))`` and ``Normalize`` (the two
  lines of ``test_osediff.py`` restated: importing that script imports the whole SR pipeline), then
  ``ram.inference_ram(lq_ram, DAPE)``, the model built by ``ram.models.ram_lora.ram(pretrained=...,
  pretrained_condition=..., image_size=384, vit='swin_l')`` and put in ``.eval()`` (which merges the LoRA); the
  probabilities are ``sigmoid`` of the ``fc`` output, read by a forward hook, as ``generate_tag`` computes them;
- ours: ``load_ram_tagger`` on the official ``lq_ram``; the runtime's ``tag_string`` with ``read_tag_vocabulary``. Our
  ``tagger_input(lq)`` is compared with the official ``lq_ram`` separately.

It also checks that the tiny files hold exactly the official model's keys, shapes and key order (RAM: the LoRA
model's state dict less ``lora_`` keys; DAPE: its ``lora_`` keys), and that the official class thresholds are ours.

Official venv (Python 3.11). OSEDiff's requirements.txt pins torch 2.0.1 and transformers 4.28.1 and leaves
loralib, fairscale and timm unpinned; recognize-anything (where ``ram/`` comes from) pins timm 0.4.12::

    python3 -m venv /tmp/osediff-official-venv
    /tmp/osediff-official-venv/bin/pip install torch==2.13.0 transformers==4.28.1 scipy Pillow
    /tmp/osediff-official-venv/bin/pip install --no-deps timm==0.4.12 loralib==0.1.2 fairscale==0.4.13 \\
        torchvision==0.15.2

Last resolved: torch 2.13.0+cpu, transformers 4.28.1 (tokenizers 0.13.3 has a cp311 wheel, so the pin installs),
timm 0.4.12, loralib 0.1.2, fairscale 0.4.13, torchvision 0.15.2+cu117, numpy 2.4.6, scipy 1.17.1, Pillow 13.0.0.
The venv takes torch 2.13 (CPU) in place of the pinned 2.0.1. torchvision 0.15.2 is torch 2.0.1's release;
installed without dependencies, its compiled ops do not load against torch 2.13 (a warning), but its transforms are
plain torch and are what runs: its tensor ``Resize`` default (``antialias="warn"``) resizes without antialias. timm
and fairscale are imported by ``ram/models`` (vit.py, tag2text.py) and never run on the tagging path.

Stubs and patches (nothing else of the official code is changed):

- ``init_tokenizer`` (in ``ram.models.ram_lora``'s namespace) returns a stand-in of the vocabulary size: the official
  loads ``bert-base-uncased`` from a hard-coded local path; RAM only takes its length (to resize embeddings the
  tagging head then deletes) and the token count of its caption prompt;
- ``ram/configs`` and ``ram/data`` hold the tiny configs and tag files (the Chinese tag list is the English one).

The files hold only tensors, so torch 2.13's ``torch.load`` default (``weights_only=True``) reads them as torch
2.0.1 did.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import torch

OFFICIAL_PYTHON = Path("/tmp/osediff-official-venv/bin/python")
GIT_DIR = Path("/work/.mirror/cswry+OSEDiff/repo")
TOLERANCE = 1e-5
# lq (H, W): the tagger sees OSEDiff's x4 input, trimmed to multiples of 8; 384 is the identity resize, 200x328 an
# upscale.
IMAGE_SIZES = ((512, 512), (480, 640), (384, 384), (200, 328), (768, 1024))
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # test_osediff.py's ram_transforms


def random_images(seed: int) -> list[np.ndarray]:
    """(1, 3, H, W) float32 in [0, 1]: smooth random fields with noise, each with its own brightness and contrast."""
    rng = np.random.default_rng(seed)
    images = []
    for height, width in IMAGE_SIZES:
        coarse = torch.from_numpy(rng.random((1, 3, 6, 8), dtype=np.float32))
        smooth = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
        noise = torch.from_numpy(rng.random((1, 3, height, width), dtype=np.float32))
        mixed = rng.uniform(0.3, 1.0) * (0.8 * smooth + 0.2 * noise) + rng.uniform(-0.2, 0.3)
        images.append(mixed.clamp(0, 1).numpy())
    return images


# --- official side (official venv; no sr_export here) ---

class _StandInTokenizer:
    """What RAM takes from its BERT tokenizer: a length, and token ids of its caption prompt."""

    def __init__(self, size: int):
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __call__(self, text: str) -> types.SimpleNamespace:
        return types.SimpleNamespace(input_ids=[101, *range(len(text.split())), 102])


def _extract_ram_package(git_dir: Path, destination: Path) -> None:
    def git(*args: str) -> bytes:
        return subprocess.run(["git", f"--git-dir={git_dir}", *args], check=True, capture_output=True).stdout

    for name in git("ls-tree", "-r", "--name-only", "HEAD", "ram").decode().splitlines():
        (destination / name).parent.mkdir(parents=True, exist_ok=True)
        (destination / name).write_bytes(git("show", f"HEAD:{name}"))


def _key_layout(state: dict) -> list[tuple[str, tuple[int, ...]]]:
    return [(key, tuple(value.shape)) for key, value in state.items()]


def _first_difference(ours: list, official: list) -> str | None:
    for index, (mine, theirs) in enumerate(zip(ours, official, strict=False)):
        if mine != theirs:
            return f"entry {index}: file {mine}, official {theirs}"
    return None if len(ours) == len(official) else f"file has {len(ours)} entries, official {len(official)}"


def official_side(case: Path, git_dir: Path) -> None:
    weights = case / "weights"
    package = case / "official"
    shutil.rmtree(package, ignore_errors=True)
    _extract_ram_package(git_dir, package)
    configs = json.loads((case / "configs.json").read_text())
    for name, config in configs.items():
        (package / "ram" / "configs" / name).write_text(json.dumps(config, indent=2))
    data = package / "ram" / "data"
    shutil.copy(weights / "ram_tag_list.txt", data / "ram_tag_list.txt")
    shutil.copy(weights / "ram_tag_list.txt", data / "ram_tag_list_chinese.txt")
    shutil.copy(weights / "ram_tag_list_threshold.txt", data / "ram_tag_list_threshold.txt")
    sys.path.insert(0, str(package))

    import ram.models.ram_lora as ram_lora
    from ram import inference_ram
    from torchvision import transforms

    vocabulary = configs["med_config.json"]["vocab_size"]
    ram_lora.init_tokenizer = lambda *args, **kwargs: _StandInTokenizer(vocabulary)
    model = ram_lora.ram(pretrained=str(weights / "ram_swin_large_14m.pth"),
                         pretrained_condition=str(weights / "DAPE.pth"), image_size=384, vit="swin_l")
    layout = _key_layout(model.state_dict())
    ram_file = torch.load(weights / "ram_swin_large_14m.pth", map_location="cpu")["model"]
    dape_file = torch.load(weights / "DAPE.pth", map_location="cpu")
    formats = {
        "ram": _first_difference(_key_layout(ram_file), [entry for entry in layout if "lora_" not in entry[0]]),
        "dape": _first_difference(_key_layout(dape_file), [entry for entry in layout if "lora_" in entry[0]]),
    }
    model.eval()

    ram_transforms = transforms.Compose([transforms.Resize((384, 384)),
                                         transforms.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)])
    logits = []
    model.fc.register_forward_hook(lambda module, inputs, output: logits.append(output.squeeze(-1)))
    inputs, probabilities, tags = [], [], []
    with np.load(case / "lq.npz") as images:
        for index in range(len(images.files)):
            lq_ram = ram_transforms(torch.from_numpy(images[f"lq{index}"]))
            tags.append(inference_ram(lq_ram, model)[0])
            inputs.append(lq_ram.numpy())
            probabilities.append(torch.sigmoid(logits[-1]).numpy())
    np.savez(case / "official.npz", thresholds=model.class_threshold.numpy(),
             **{f"lq_ram{i}": x for i, x in enumerate(inputs)}, **{f"prob{i}": p for i, p in enumerate(probabilities)})
    (case / "official.json").write_text(json.dumps({"tags": tags, "formats": formats}, indent=2))


# --- our side (our venv) ---

def compare_case(name: str, sizes, work: Path, official_python: Path, git_dir: Path, seed: int) -> bool:
    from sr_export.families.osediff.ram import tagger_input
    from sr_export.families.osediff.ram_checkpoint import load_ram_tagger, read_tag_vocabulary
    from sr_export.families.osediff.random_ram import write_random_ram
    from sr_runtime.families.osediff.prompt import tag_string

    case = work / name
    files = write_random_ram(case / "weights", sizes, seed=seed)
    (case / "configs.json").write_text(json.dumps(sizes.official_configs()))
    images = random_images(seed)
    np.savez(case / "lq.npz", **{f"lq{i}": image for i, image in enumerate(images)})
    subprocess.run([str(official_python), __file__, "--official-side", str(case), "--git-dir", str(git_dir)],
                   check=True)
    official = json.loads((case / "official.json").read_text())
    tagger = load_ram_tagger(files.ram, files.dape)
    vocabulary = read_tag_vocabulary(files.tag_list, files.thresholds, tagger.config.num_classes)

    ok = True
    print(f"\n== {name}: {sizes}")
    for part, difference in official["formats"].items():
        print(f"{part} file layout vs the official model: {difference or 'identical keys, shapes and order'}")
        ok &= difference is None
    with np.load(case / "official.npz") as result:
        same_thresholds = np.array_equal(result["thresholds"], np.asarray(vocabulary.thresholds, np.float32))
        print(f"class thresholds equal: {same_thresholds}")
        ok &= same_thresholds
        print("image        | resize max-abs | prob max-abs | tags equal | official tags")
        for index, lq in enumerate(images):
            official_input = torch.from_numpy(result[f"lq_ram{index}"])
            with torch.no_grad():
                resize_diff = (tagger_input(torch.from_numpy(lq)) - official_input).abs().max().item()
                probabilities = tagger(official_input)[0]
            prob_diff = np.abs(probabilities.numpy() - result[f"prob{index}"][0]).max()
            equal = tag_string(probabilities, vocabulary.tags, vocabulary.thresholds) == official["tags"][index]
            print(f"{lq.shape[2]:>4}x{lq.shape[3]:<7} | {resize_diff:14.3g} | {prob_diff:12.3g} | {equal!s:10} | "
                  f"{official['tags'][index] or '(none)'}")
            ok &= resize_diff <= TOLERANCE and prob_diff <= TOLERANCE and equal
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/osediff-ram-compare"))
    parser.add_argument("--official-python", type=Path, default=OFFICIAL_PYTHON)
    parser.add_argument("--git-dir", type=Path, default=GIT_DIR, help="the fetched cswry/OSEDiff (a bare git dir)")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--official-side", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.official_side:
        official_side(args.official_side, args.git_dir)
        return
    from sr_export.families.osediff.random_ram import TINY_RAM, TINY_RAM_WIDE

    ok = all([compare_case("tiny", TINY_RAM, args.work, args.official_python, args.git_dir, args.seed),
              compare_case("wide", TINY_RAM_WIDE, args.work, args.official_python, args.git_dir, args.seed + 1)])
    print(f"\n{'PASS' if ok else 'FAIL'} (tolerance {TOLERANCE:g})")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
