"""The official YAML config (or the built-in one) as typed settings, with the official defaults.

Only ``model``, ``autoencoder`` and ``diffusion`` are read; OmegaConf interpolations (``${a.b.c}``, as
the journal config's ``out_channels: ${autoencoder.params.embed_dim}``) are resolved against the whole
file. What the official code would refuse or crash on, and what this toolchain does not export (another
prediction type, an LR feature extractor, a masked or unconditioned UNet), is one SRError naming the key.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sr_runtime.bounded_parse import read_yaml
from sr_runtime.checks import is_int
from sr_runtime.errors import SRError
from sr_runtime.families.resshift.graphs import SCALE

from .official_configs import ModelSpec, OfficialCode

SECTIONS = ("model", "autoencoder", "diffusion")
TARGETS = {"model": "models.unet.UNetModelSwin", "autoencoder": "ldm.models.autoencoder.VQModelTorch",
           "diffusion": "models.script_util.create_gaussian_diffusion"}
GROUPS = 32  # every GroupNorm of both networks has 32 groups
_REFERENCE = re.compile(r"\$\{([^}]*)\}")
_PATH = re.compile(r"^[A-Za-z_]\w*(\.\w+)*$")
_MISSING = object()
# The schedule has an entry per diffusion step; a typo of 1e8 steps would take gigabytes before any check.
MAX_STEPS = 100_000
# Far above every released config (widths up to 640, 2 blocks per level, 4 levels), low enough that a typo does
# not build millions of modules before the checkpoint is compared with them.
MAX_SIZE = 65_536
MAX_BLOCKS = 64
MAX_LEVELS = 16


@dataclass(frozen=True)
class UNetConfig:
    image_size: int  # the size the Swin layers are built for (window and shift choices, the mask buffers)
    in_channels: int  # of the first conv: latent + LR channels
    model_channels: int
    out_channels: int
    num_res_blocks: tuple[int, ...]
    attention_resolutions: tuple[int, ...]
    channel_mult: tuple[int, ...]
    conv_resample: bool
    num_heads: int  # of the Swin attention
    use_scale_shift_norm: bool
    resblock_updown: bool
    swin_depth: int
    swin_embed_dim: int
    window_size: int
    mlp_ratio: float
    patch_norm: bool


@dataclass(frozen=True)
class VQConfig:
    embed_dim: int
    n_embed: int
    z_channels: int
    ch: int
    ch_mult: tuple[int, ...]
    num_res_blocks: tuple[int, ...]
    attn_resolutions: tuple[int, ...]
    resolution: int  # where attn_resolutions are counted from
    resamp_with_conv: bool

    @property
    def factor(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)


@dataclass(frozen=True)
class DiffusionConfig:
    steps: int
    min_noise_level: float
    etas_end: float
    kappa: float
    power: float
    timestep_respacing: int  # the steps sampled (the official default: all of them)
    scale_factor: float
    normalize_input: bool
    latent_flag: bool


@dataclass(frozen=True)
class ResShiftConfig:
    unet: UNetConfig
    vq: VQConfig
    diffusion: DiffusionConfig
    pad_multiple: int  # LR px: each patch is reflect-padded to multiples of it
    params: dict[str, Any]  # the three sections' params, resolved: recorded in the manifest


class _Section:
    """Typed reads from one params mapping, with the official defaults and errors that name the key."""

    def __init__(self, params: Any, where: str):
        if not isinstance(params, dict):
            raise SRError(f"{where} must be a mapping, got {params!r}")
        self.params, self.where = params, where

    def _get(self, key: str, default: Any) -> Any:
        value = self.params.get(key, default)
        if value is _MISSING:
            raise SRError(f"{self.where} lacks {key}")
        return value

    def _fail(self, key: str, what: str, value: Any) -> SRError:
        return SRError(f"{self.where}.{key} must be {what}, got {value!r}")

    def int(self, key: str, default: Any = _MISSING, minimum: int = 1, maximum: int = MAX_SIZE,
            why: str = "far above every released config") -> int:
        value = self._get(key, default)
        if not is_int(value, minimum):
            raise self._fail(key, f"an integer >= {minimum}", value)
        if value > maximum:
            raise self._fail(key, f"at most {maximum:,} ({why})", value)
        return value

    def float(self, key: str, default: Any = _MISSING, low: float = 0.0, high: float = 1e3, why: str = "") -> float:
        """A number in (low, high]: the bounds keep the schedule it derives finite."""
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not low < value <= high:
            raise self._fail(key, f"a number above {low:g} and at most {high:g}" + (f" ({why})" if why else ""), value)
        return float(value)

    def bool(self, key: str, default: Any = _MISSING) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self._fail(key, "true or false", value)
        return value

    def ints(self, key: str, default: Any = _MISSING, length: int | None = None, maximum: int = MAX_SIZE
             ) -> tuple[int, ...]:
        """A list of positive ints (at most ``MAX_LEVELS`` of them); an int stands for ``length`` copies (as the
        official classes take it)."""
        value = self._get(key, default)
        if is_int(value) and length is not None:
            value = [value] * length
        if not isinstance(value, list) or len(value) > MAX_LEVELS or not all(
                is_int(v, 1, maximum) for v in value):
            raise self._fail(key, f"a list of at most {MAX_LEVELS} integers from 1 to {maximum:,}", value)
        if length is not None and len(value) != length:
            raise self._fail(key, f"{length} values (one per level)", value)
        return tuple(value)

    def require(self, key: str, allowed: tuple, default: Any = _MISSING, why: str = "") -> Any:
        value = self._get(key, default)
        if value not in allowed:
            raise self._fail(key, " or ".join(map(repr, allowed)) + (f" ({why})" if why else ""), value)
        return value

    def refuse_unknown(self, known: set[str]) -> None:
        if unknown := sorted(set(self.params) - known):
            raise SRError(f"{self.where} has unknown key(s) {', '.join(unknown)}")


# Interpolations can refer to interpolations: bounded, so a chain of ${a}${a} doubling at every level cannot
# run away (the official configs resolve in a few dozen steps).
MAX_RESOLVE_STEPS = 10_000
MAX_RESOLVE_CHAIN = 64  # ${a} -> ${b} -> ...: each link is a level of recursion
MAX_RESOLVED_TEXT = 4096


def _resolve(value: Any, root: dict, source: str, where: str, seen: tuple[str, ...] = (),
             budget: list[int] | None = None) -> Any:
    """``value`` (at ``where`` in the file ``source``) with every ``${dotted.path}`` replaced by what it names in
    ``root`` (recursively)."""
    budget = [MAX_RESOLVE_STEPS] if budget is None else budget
    budget[0] -= 1
    if budget[0] < 0:
        raise SRError(f"{source}: {where}: the interpolations take more than {MAX_RESOLVE_STEPS:,} steps to resolve")
    if isinstance(value, dict):
        return {k: _resolve(v, root, source, f"{where}.{k}", seen, budget) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, root, source, where, seen, budget) for v in value]
    if not isinstance(value, str) or "${" not in value:
        return value

    def lookup(path: str) -> Any:
        if not _PATH.match(path):
            raise SRError(f"{source}: {where}: interpolation ${{{path}}} is not a plain key path (only those are resolved)")
        if path in seen:
            raise SRError(f"{source}: {where}: interpolation ${{{path}}} refers to itself")
        if len(seen) >= MAX_RESOLVE_CHAIN:
            raise SRError(f"{source}: {where}: interpolations refer through more than {MAX_RESOLVE_CHAIN} others")
        node: Any = root
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                raise SRError(f"{source}: {where}: interpolation ${{{path}}} names nothing in the config")
            node = node[part]
        return _resolve(node, root, source, path, (*seen, path), budget)

    whole = _REFERENCE.fullmatch(value)
    if whole:
        return lookup(whole.group(1))
    text = _REFERENCE.sub(lambda m: str(lookup(m.group(1))), value)
    if len(text) > MAX_RESOLVED_TEXT:
        raise SRError(f"{source}: {where}: an interpolated value grows to {len(text):,} characters (at most {MAX_RESOLVED_TEXT:,})")
    return text


def read_config_file(path: Path) -> dict[str, Any]:
    """The official YAML's three sections, interpolations resolved."""
    document = read_yaml(Path(path), "config")
    if not isinstance(document, dict) or any(not isinstance(document.get(s), dict) for s in SECTIONS):
        raise SRError(f"config {path} is not an official ResShift/SinSR config: it needs {', '.join(SECTIONS)} sections")
    return {s: _resolve(document[s], document, f"config {path}", s) for s in SECTIONS}


def _unet(s: _Section, code: OfficialCode, latent_channels: int) -> UNetConfig:
    known = {"image_size", "in_channels", "model_channels", "out_channels", "num_res_blocks", "attention_resolutions",
             "dropout", "channel_mult", "conv_resample", "dims", "use_fp16", "num_heads", "num_head_channels",
             "use_scale_shift_norm", "resblock_updown", "swin_depth", "swin_embed_dim", "window_size", "mlp_ratio",
             "patch_norm", "cond_lq"}
    if code is OfficialCode.RESSHIFT:
        known |= {"cond_mask", "lq_size"}
    s.refuse_unknown(known)
    s.require("dims", (2,), 2)
    s.require("cond_lq", (True,), True, "the LR patch conditions every ResShift/SinSR super-resolution model")
    in_channels = s.int("in_channels")
    if code is OfficialCode.RESSHIFT:
        # ResShift's class concatenates the LR patch as is only when lq_size == image_size.
        s.require("cond_mask", (False,), False, "masks are for inpainting")
        s.require("lq_size", (s.int("image_size"),), 256, "an LR feature extractor is not exported")
        in_channels += 3
    mult = s.ints("channel_mult", [1, 2, 4, 8])
    model_channels, embed_dim = s.int("model_channels"), s.int("swin_embed_dim", 96)
    head_channels = s.params.get("num_head_channels", -1)
    heads = s.int("num_heads", 1) if head_channels == -1 else embed_dim // s.int("num_head_channels")
    if in_channels != latent_channels + 3 or s.int("out_channels") != latent_channels:
        raise SRError(f"{s.where}: the UNet takes {in_channels} channels and gives {s.params['out_channels']}; with "
                      f"the autoencoder's {latent_channels} latent channels it must take {latent_channels + 3} and give "
                      f"{latent_channels}")
    if any(model_channels * m % GROUPS for m in mult) or embed_dim % GROUPS or heads < 1 or embed_dim % heads:
        raise SRError(f"{s.where}: widths {[model_channels * m for m in mult]} and swin_embed_dim {embed_dim} must "
                      f"be multiples of {GROUPS} (GroupNorm32) and of the {heads} attention heads")
    return UNetConfig(
        image_size=s.int("image_size"), in_channels=in_channels, model_channels=model_channels,
        out_channels=latent_channels, num_res_blocks=s.ints("num_res_blocks", length=len(mult), maximum=MAX_BLOCKS),
        attention_resolutions=s.ints("attention_resolutions"), channel_mult=mult,
        conv_resample=s.bool("conv_resample", True), num_heads=heads,
        use_scale_shift_norm=s.bool("use_scale_shift_norm", False), resblock_updown=s.bool("resblock_updown", False),
        swin_depth=s.int("swin_depth", 2, maximum=MAX_BLOCKS), swin_embed_dim=embed_dim, window_size=s.int("window_size", 8),
        mlp_ratio=s.float("mlp_ratio", 2.0, 0.0, 64.0), patch_norm=s.bool("patch_norm", False),
    )


def _vq(s: _Section) -> VQConfig:
    s.refuse_unknown({"embed_dim", "n_embed", "ddconfig", "remap", "sane_index_shape"})
    s.require("remap", (None,), None, "a remapped codebook is not exported")
    dd = _Section(s.params.get("ddconfig"), f"{s.where}.ddconfig")
    # The official Encoder / Decoder take **kwargs and ignore keys they do not know (padding_mode).
    dd.require("double_z", (False,), True, "a VQ autoencoder has one latent per pixel")
    dd.require("in_channels", (3,))
    dd.require("out_ch", (3,))
    dd.require("use_linear_attn", (False,), False)
    dd.require("attn_type", ("vanilla",), "vanilla")
    mult = dd.ints("ch_mult", [1, 2, 4, 8])
    ch = dd.int("ch")
    if any(ch * m % GROUPS for m in mult):
        raise SRError(f"{dd.where}: widths {[ch * m for m in mult]} must be multiples of {GROUPS} (GroupNorm)")
    return VQConfig(
        embed_dim=s.int("embed_dim"), n_embed=s.int("n_embed"), z_channels=dd.int("z_channels"), ch=ch, ch_mult=mult,
        num_res_blocks=dd.ints("num_res_blocks", length=len(mult), maximum=MAX_BLOCKS),
        attn_resolutions=dd.ints("attn_resolutions", []), resolution=dd.int("resolution"),
        resamp_with_conv=dd.bool("resamp_with_conv", True),
    )


def _diffusion(s: _Section) -> DiffusionConfig:
    s.refuse_unknown({"normalize_input", "schedule_name", "sf", "min_noise_level", "steps", "kappa", "etas_end",
                      "schedule_kwargs", "weighted_mse", "predict_type", "timestep_respacing", "scale_factor",
                      "latent_flag"})
    s.require("schedule_name", ("exponential",), _MISSING, "the 'ldm' schedule reads a .mat file")
    s.require("sf", (SCALE,), 4)
    s.require("predict_type", ("xstart",), "xstart", "every released model predicts x0")
    power = _Section(s.params.get("schedule_kwargs") or {}, f"{s.where}.schedule_kwargs").float(
        "power", _MISSING, 1e-3, 1e2, "the official configs use 0.3")
    steps = s.int("steps", 1000, minimum=2, maximum=MAX_STEPS, why="the official configs train with 1,000")
    respacing = s.params.get("timestep_respacing")
    if respacing is not None:
        respacing = s.int("timestep_respacing", minimum=2)
        if respacing > steps:
            raise SRError(f"{s.where}.timestep_respacing {respacing} is above steps {steps}")
    level = "a noise level: eta runs from it to etas_end below 1"
    return DiffusionConfig(
        steps=steps, min_noise_level=s.float("min_noise_level", 0.01, 1e-6, 1.0, level),
        etas_end=s.float("etas_end", 0.99, 1e-6, 1.0, level),
        kappa=s.float("kappa", 1.0, 1e-3, 1e2, "the official configs use 1 and 2"), power=power,
        timestep_respacing=respacing or steps,
        scale_factor=s.float("scale_factor", _MISSING, 1e-3, 1e3, "the latents' scale: 1 in every official config"),
        normalize_input=s.bool("normalize_input"), latent_flag=s.bool("latent_flag", True),
    )


def load_config(spec: ModelSpec, path: str | Path | None = None) -> ResShiftConfig:
    """``path`` (an official YAML), else the model's built-in official config, typed and checked."""
    raw = read_config_file(Path(path)) if path else copy.deepcopy(spec.config)
    where = f"config {path}" if path else f"the built-in {spec.config_name}"
    for section in SECTIONS:
        target = raw[section].get("target", TARGETS[section])
        if target != TARGETS[section]:
            raise SRError(f"{where}: {section}.target is {target!r}; {spec.name} needs {TARGETS[section]}")
    return parse_params(spec, {section: raw[section].get("params") for section in SECTIONS}, where)


def parse_params(spec: ModelSpec, params: dict[str, Any], where: str) -> ResShiftConfig:
    """The typed config of the three sections' ``params`` (as a manifest records them)."""
    vq = _vq(_Section(params.get("autoencoder"), f"{where}: autoencoder.params"))
    unet = _unet(_Section(params.get("model"), f"{where}: model.params"), spec.code, vq.embed_dim)
    diffusion = _diffusion(_Section(params.get("diffusion"), f"{where}: diffusion.params"))
    if vq.factor != SCALE:
        raise SRError(f"{where}: the autoencoder downsamples by {vq.factor}; the UNet needs latents of the LR size, "
                      f"so x{SCALE} needs a factor-{SCALE} autoencoder")
    # ResShift pads to the UNet's lq_size (inference_resshift.py), SinSR to its sampler's desired_min_size 64.
    pad = params["model"].get("lq_size", 64) if spec.code is OfficialCode.RESSHIFT else 64
    return ResShiftConfig(unet, vq, diffusion, pad, {section: params[section] for section in SECTIONS})
