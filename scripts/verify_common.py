"""What both sides of verify_invsr.py share: the cases, the LR images, the stage hooks, the metrics (PSNR: sr_export.metrics).

Imported from the official venv as well as from ours: numpy, Pillow and hashlib only at module level.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

# name -> (height, width) of the LR image
IMAGES = {
    "h128w128": (128, 128),  # exactly one tile: one pipeline call
    "h64w80": (64, 80),  # small: centred reflect padding to 128x128, one call, then crop
    "h200w150": (200, 150),  # chopping: padded to 208x160, 3x2 tiles of 128 at stride 64, Gaussian blend
    # The pad multiple mod_lq: 200 and 168 are multiples of 4 (a 2-level UNet) but not of 16 (4 levels), so
    # a 2-level UNet tiles the image as is while a hard-coded 16 would pad it to 208x176 and move every tile.
    "h200w168": (200, 168),
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
    ("h200w168", 1, None),
    ("h200w168", 1, "wavelet"),
]
STAGES = ("text", "np_moments", "vae_moments", "unet_in", "unet_t", "unet_out", "dec_in", "dec_out")


def case_name(image: str, steps: int, color_fix: str | None) -> str:
    return f"{image}_s{steps}_{color_fix or 'none'}"


def selected_cases(names: str) -> list[tuple[str, int, str | None]]:
    """``names``: comma-separated case names; empty selects every case."""
    wanted = set(names.split(",")) if names else None
    return [c for c in CASES if wanted is None or case_name(*c) in wanted]


def make_images(folder: Path) -> None:
    """Deterministic 8-bit RGB PNGs: smooth colour ramps, a few sinusoids and some noise."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    # Each image's seed is its position in IMAGES: new images go at the end so the others stay the same.
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


def sha256(path: Path) -> str:
    return hashlib.sha256(path.resolve().read_bytes()).hexdigest()


def check_same_weights(hub: Path, folder: Path) -> None:
    """The hub cache (official side) and the diffusers folder (our side) must hold identical files."""
    snapshot = next((hub / "models--stabilityai--sd-turbo" / "snapshots").iterdir())
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        for f in sorted((folder / sub).iterdir()):
            if sha256(f) != sha256(snapshot / sub / f.name):
                raise SystemExit(f"{sub}/{f.name} differs between {hub} and {folder}")
    print(f"weights: {folder} and the hub snapshot {snapshot.name} hold identical files")
