"""The x4 RRDBNet of ESRGAN / Real-ESRGAN / BSRGAN, and loaders for its two released checkpoint layouts.

Module names follow BasicSR's ``RRDBNet`` (``conv_first``, ``body.N.rdbK.convJ``, ``conv_body``,
``conv_up1/2``, ``conv_hr``, ``conv_last``), so ``RealESRGAN_x4plus.pth`` loads key for key; BSRGAN's
``BSRGAN.pth`` uses the older ESRGAN names for the same tensors and is renamed on load
(cszn/BSRGAN ``models/network_rrdbnet.py``). The computation, per BasicSR and cszn/BSRGAN:

    feat = conv_first(x);  feat = feat + conv_body(body(feat))
    feat = lrelu(conv_up1(nearest_x2(feat)));  feat = lrelu(conv_up2(nearest_x2(feat)))
    out  = conv_last(lrelu(conv_hr(feat)))

with LeakyReLU(0.2) and residual scaling 0.2 inside every dense block and again per RRDB. Only x4 is
built: the x2 / x1 variants start with a pixel-unshuffle (12 / 48 input channels) and are refused.

The loader infers the width from the tensors themselves (num_feat from ``conv_first.weight``,
num_grow_ch from the first dense conv, num_block from the highest ``body.N`` index), so the full model,
the 6-block anime model and the tiny test checkpoints all load through the same code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sr_runtime.errors import SRError

from ...checkpoints import load_checkpoint_dict, strip_wrapper_prefixes
from .layouts import BSRGAN, LAYOUTS, REALESRGAN

NEGATIVE_SLOPE = 0.2
RESIDUAL_SCALE = 0.2
DENSE_CONVS = 5
DENSE_BLOCKS = 3  # rdb1..rdb3 per RRDB

# Checkpoint layouts: how each release names the tensors of the same network.
# BasicSR trains with an EMA copy of the generator; Real-ESRGAN's inference prefers it, then "params".
PARAM_WRAPPERS = ("params_ema", "params")

# (BasicSR name, old ESRGAN/BSRGAN name) prefixes; the remaining parts of the keys are the same.
_BSRGAN_RENAMES = (
    ("body.", "RRDB_trunk."),
    ("conv_body.", "trunk_conv."),
    ("conv_up1.", "upconv1."),
    ("conv_up2.", "upconv2."),
    ("conv_hr.", "HRconv."),
)
_BSRGAN_RDB = re.compile(r"\.rdb([123])\.")
_BODY_INDEX = re.compile(r"^body\.(\d+)\.")


@dataclass(frozen=True)
class RRDBConfig:
    num_feat: int = 64
    num_block: int = 23
    num_grow_ch: int = 32


OFFICIAL_CONFIG = RRDBConfig()  # RealESRGAN_x4plus and BSRGAN: 16,697,987 parameters
# Small enough to export and run in a blink: the demo model and the tests.
TINY_CONFIG = RRDBConfig(num_feat=16, num_block=2, num_grow_ch=8)


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convs, each seeing the block input and every earlier output (dense growth)."""

    def __init__(self, num_feat: int, num_grow_ch: int):
        super().__init__()
        for i in range(DENSE_CONVS):
            out_ch = num_feat if i == DENSE_CONVS - 1 else num_grow_ch
            setattr(self, f"conv{i + 1}", nn.Conv2d(num_feat + i * num_grow_ch, out_ch, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for i in range(1, DENSE_CONVS):
            conv = getattr(self, f"conv{i}")
            features.append(F.leaky_relu(conv(torch.cat(features, 1)), NEGATIVE_SLOPE))
        return self.conv5(torch.cat(features, 1)) * RESIDUAL_SCALE + x


class RRDB(nn.Module):
    def __init__(self, num_feat: int, num_grow_ch: int):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * RESIDUAL_SCALE + x


class RRDBNet(nn.Module):
    """RGB (n,3,h,w) -> RGB (n,3,4h,4w), unclamped (callers clamp to [0, 1])."""

    def __init__(self, config: RRDBConfig = OFFICIAL_CONFIG):
        super().__init__()
        self.config = config
        nf = config.num_feat
        self.conv_first = nn.Conv2d(3, nf, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(nf, config.num_grow_ch) for _ in range(config.num_block)))
        self.conv_body = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_hr = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, 3, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for conv in (self.conv_up1, self.conv_up2):
            feat = F.leaky_relu(conv(F.interpolate(feat, scale_factor=2, mode="nearest")), NEGATIVE_SLOPE)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), NEGATIVE_SLOPE))


# ---- checkpoint layouts ---------------------------------------------------------------------------

def _renamed(key: str, renames) -> str:
    """``key`` with the first matching (prefix, replacement) of ``renames`` applied."""
    for prefix, replacement in renames:
        if key.startswith(prefix):
            return replacement + key[len(prefix):]
    return key


def to_layout(key: str, layout: str) -> str:
    """A BasicSR key as the checkpoint of ``layout`` names it."""
    if layout == REALESRGAN:
        return key
    return _BSRGAN_RDB.sub(r".RDB\1.", _renamed(key, _BSRGAN_RENAMES))


def from_layout(key: str, layout: str) -> str:
    """The BasicSR name of a key of a ``layout`` checkpoint."""
    if layout == REALESRGAN:
        return key
    return re.sub(r"\.RDB([123])\.", r".rdb\1.", _renamed(key, [(old, new) for new, old in _BSRGAN_RENAMES]))


def _detect_layout(keys) -> str | None:
    if any(k.startswith("RRDB_trunk.") or k.startswith("trunk_conv.") for k in keys):
        return BSRGAN
    if any(k.startswith("body.") or k.startswith("conv_body.") for k in keys):
        return REALESRGAN
    return None


def _unwrap_params(loaded: dict[Any, Any], source: Path) -> dict[Any, Any]:
    """Real-ESRGAN / BasicSR releases store {'params_ema': sd} (or 'params', or both)."""
    for name in PARAM_WRAPPERS:
        if name in loaded:
            inner = loaded[name]
            if not isinstance(inner, dict):
                raise SRError(f"checkpoint {source}: {name!r} holds a {type(inner).__name__}, not a state dict")
            return inner
    return loaded


def infer_config(state: dict[str, Any], source: str | Path) -> RRDBConfig:
    """Widths and depth from the tensors (BasicSR names): any x4 RRDBNet loads, the tiny ones included."""
    first = state.get("conv_first.weight")
    if not isinstance(first, torch.Tensor) or first.ndim != 4:
        raise SRError(f"checkpoint {source} has no conv_first.weight tensor: it is not an RRDBNet checkpoint")
    if first.shape[1] != 3:
        # BasicSR's x2 / x1 models pixel-unshuffle RGB into 12 / 48 channels before conv_first.
        raise SRError(
            f"checkpoint {source}: conv_first takes {first.shape[1]} channels, an x4 RRDBNet takes 3 "
            "(x2 / x1 pixel-unshuffle models are not supported)"
        )
    blocks = {int(m.group(1)) for k in state if (m := _BODY_INDEX.match(k))}
    grow = state.get("body.0.rdb1.conv1.weight")
    if not blocks or not isinstance(grow, torch.Tensor) or grow.ndim != 4:
        raise SRError(f"checkpoint {source} has no RRDB trunk (body.0.rdb1.conv1.weight): not an RRDBNet checkpoint")
    return RRDBConfig(num_feat=int(first.shape[0]), num_block=max(blocks) + 1, num_grow_ch=int(grow.shape[0]))


def _first_few(keys: list[str], count: int = 3) -> str:
    shown = ", ".join(keys[:count])
    return shown + (f" and {len(keys) - count} more" if len(keys) > count else "")


def model_from_state_dict(state: dict[Any, Any], layout: str, source: str | Path) -> RRDBNet:
    """A float32 RRDBNet holding exactly the tensors of ``state`` (keys in ``layout``'s naming)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    state = strip_wrapper_prefixes(state, source)
    found = _detect_layout(state)
    if found is not None and found != layout:
        trunk = next(k for k in sorted(state) if _detect_layout([k]) == found)
        raise SRError(
            f"checkpoint {source} has {found} key names ({trunk}), not {layout} ones; build it with --model {found}"
        )
    basicsr = {from_layout(k, layout): v for k, v in state.items()}
    model = RRDBNet(infer_config(basicsr, source))
    expected = model.state_dict()
    missing = sorted(to_layout(k, layout) for k in expected if k not in basicsr)
    unexpected = sorted(to_layout(k, layout) for k in basicsr if k not in expected)
    if missing or unexpected:
        parts = [f"missing {len(missing)} keys ({_first_few(missing)})" if missing else "",
                 f"unexpected {len(unexpected)} keys ({_first_few(unexpected)})" if unexpected else ""]
        raise SRError(f"checkpoint {source} does not match a {layout} RRDBNet: {'; '.join(p for p in parts if p)}")
    for key, value in basicsr.items():
        if not isinstance(value, torch.Tensor):
            raise SRError(f"checkpoint {source}: {to_layout(key, layout)} is a {type(value).__name__}, not a tensor")
        if value.shape != expected[key].shape:
            raise SRError(
                f"checkpoint {source}: {to_layout(key, layout)} has shape {tuple(value.shape)}, "
                f"the inferred {model.config} needs {tuple(expected[key].shape)}"
            )
    # fp16 releases exist; the reference and the export start from fp32.
    model.load_state_dict({k: v.float() for k, v in basicsr.items()}, strict=True)
    return model.eval()


def load_rrdbnet(path: str | Path, layout: str) -> RRDBNet:
    """``RealESRGAN_x4plus.pth`` (layout "realesrgan": {'params_ema'|'params': sd} or a bare dict) or
    ``BSRGAN.pth`` (layout "bsrgan": a bare dict with ESRGAN names), read with ``weights_only=True``."""
    loaded = load_checkpoint_dict(path)
    return model_from_state_dict(_unwrap_params(loaded, Path(path)), layout, path)


def save_checkpoint(model: RRDBNet, path: str | Path, layout: str, wrapper: str | None = None) -> Path:
    """``model`` in a release's file format (the loader's inverse): ``wrapper`` "params_ema" or "params"
    wraps the state dict as BasicSR does, None stores it bare (BSRGAN)."""
    if wrapper not in (None, *PARAM_WRAPPERS):
        raise ValueError(f"wrapper must be None or one of {PARAM_WRAPPERS}, got {wrapper!r}")
    state = {to_layout(k, layout): v.detach().clone() for k, v in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({wrapper: state} if wrapper else state, path)
    return path


def write_random_rrdbnet(
    path: Path, layout: str = REALESRGAN, seed: int = 0, wrapper: str | None = "params_ema", config: RRDBConfig = TINY_CONFIG
) -> Path:
    """A seeded random-weight x4 RRDBNet of ``config`` in the file format of ``layout`` (tests, the demo
    model): "realesrgan" ({'params_ema': sd} by default) or "bsrgan" (pass wrapper=None)."""
    torch.manual_seed(seed)
    return save_checkpoint(RRDBNet(config), path, layout, wrapper)
