"""The runtime's entry point: open an engine bundle and upscale images by chaining its engines.

The manifest's ``pipeline.family`` picks the chain (``FAMILIES``). InvSR, per tile batch:
vae_encoder -> noise_predictor -> unet_step x N -> vae_decoder, with every constant (timesteps,
sigmas, prompt embeddings) taken from the bundle, never recomputed here. RRDBNet: sr_runtime.rrdbnet.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np

from .backends import backend_for
from .backends.base import REBUILD_HINT, Call, ChainPlan, EngineSession, RuntimeOptions, TileChain
from .errors import SRError
from .family import Family, check_graph_io
from .manifest import MANIFEST_NAME, PROMPT_EMBEDS_NAME, Manifest, read_manifest, schedule_problem
from .rrdbnet import RRDBNetFamily
from .upscale import LATENT_CHANNELS, SCALE, UpscaleSettings, latent_shape, upscale_array
from .version import TOOL_VERSION

log = logging.getLogger(__name__)

FAMILY = "invsr"
# Host data per tile batch, as named by the chain plan.
FEEDS = ("lr", "predictor_noise", "vae_noise")
# The denoising steps alternate between two latent buffers, so no step reads what it writes: running a
# call twice (ONNX Runtime does, to capture a CUDA graph) gives the same result.
LATENTS = ("latent_a", "latent_b")


def _scalar(value: float) -> np.ndarray:
    return np.array([value], np.float32)


def invsr_calls(steps: int) -> tuple[Call, ...]:
    """vae_encoder -> noise_predictor -> unet_step x ``steps`` -> vae_decoder, over named buffers."""
    calls = [
        Call("vae_encoder", {"lr": "lr", "noise": "vae_noise"}, {"z_lr": "z_lr"}),
        Call(
            "noise_predictor",
            {"lr": "lr", "timestep": "t0", "noise": "predictor_noise", "z_lr": "z_lr", "sigma": "sigma0"},
            {"latent": LATENTS[0]},
        ),
    ]
    for i in range(steps):
        inputs = {"latent": LATENTS[i % 2], "timestep": f"t{i}", "sigma": f"sigma{i}", "sigma_next": f"sigma{i + 1}",
                  "prompt_embeds": "prompt_embeds"}
        calls.append(Call("unet_step", inputs, {"latent_next": LATENTS[(i + 1) % 2]}))
    calls.append(Call("vae_decoder", {"latent": LATENTS[steps % 2]}, {"image": "image"}))
    return tuple(calls)


def invsr_plan(manifest: Manifest, prompt_embeds: np.ndarray, batch: int) -> ChainPlan:
    """The engine calls of one batch of ``batch`` tiles, with the bundle's constants."""
    p = manifest.pipeline
    constants = {
        **{f"t{i}": _scalar(t) for i, t in enumerate(p.timesteps)},
        **{f"sigma{i}": _scalar(s) for i, s in enumerate(p.sigmas)},
        "prompt_embeds": np.repeat(prompt_embeds, batch, axis=0),
    }
    sizes = {
        "batch": batch,
        "tile": p.tile,
        "latent": latent_shape(batch, p.tile)[-1],
        "image": p.tile * SCALE,
        "tokens": prompt_embeds.shape[1],
        "embed": prompt_embeds.shape[2],
    }
    return ChainPlan(batch, invsr_calls(p.steps), constants, FEEDS, "image", sizes)


def check_invsr_bundle(manifest: Manifest) -> None:
    """Refuses a bundle whose pipeline or graphs are not the ones this chain binds."""
    p = manifest.pipeline
    if p.family != FAMILY or p.scale != SCALE or p.latent_channels != LATENT_CHANNELS:
        raise SRError(
            f"the bundle is a {p.family} x{p.scale} model with {p.latent_channels} latent channels; this runtime "
            f"runs {FAMILY} x{SCALE} with {LATENT_CHANNELS}"
        )
    if problem := schedule_problem(p):
        raise SRError(f"the bundle's {MANIFEST_NAME} is malformed ({problem}); rebuild the bundle")
    check_graph_io(manifest, invsr_calls(p.steps))


def load_prompt_embeds(bundle: Path, manifest: Manifest) -> np.ndarray:
    path = bundle / PROMPT_EMBEDS_NAME
    if not path.is_file():
        raise SRError(f"bundle {bundle}: {PROMPT_EMBEDS_NAME} is missing; rebuild it")
    try:
        embeds = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise SRError(f"{path} is unreadable ({err}); {REBUILD_HINT}") from err
    expected = tuple(manifest.pipeline.embed_shape)
    if embeds.shape != expected or embeds.ndim != 3 or embeds.shape[0] != 1:
        raise SRError(f"{path} has shape {embeds.shape}, the manifest says {expected} (1, tokens, dim); {REBUILD_HINT}")
    return embeds.astype(np.float32)


class InvSRFamily(Family):
    name = FAMILY
    feeds = FEEDS

    def __init__(self, bundle: Path, manifest: Manifest):
        super().__init__(bundle, manifest)
        check_invsr_bundle(manifest)
        self.prompt_embeds = load_prompt_embeds(self.bundle, manifest)

    def plan(self, batch: int) -> ChainPlan:
        return invsr_plan(self.manifest, self.prompt_embeds, batch)

    def upscale(
        self,
        image: np.ndarray,
        chain: TileChain,
        color_fix: str | None = None,
        seed: int | None = None,
        on_tiles_done: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        p = self.manifest.pipeline

        def run_tiles(lr: np.ndarray, predictor_noise: np.ndarray, vae_noise: np.ndarray) -> np.ndarray:
            feeds = {"lr": lr, "predictor_noise": predictor_noise, "vae_noise": vae_noise}
            return np.asarray(chain(feeds), dtype=np.float32)

        settings = UpscaleSettings(tile=p.tile, batch=p.batch, color_fix=color_fix, seed=seed)
        return upscale_array(image, run_tiles, settings, p.steps, on_tiles_done)


# manifest pipeline.family -> its chain
FAMILIES: dict[str, type[Family]] = {InvSRFamily.name: InvSRFamily, RRDBNetFamily.name: RRDBNetFamily}


def family_for(bundle: Path, manifest: Manifest) -> Family:
    cls = FAMILIES.get(manifest.pipeline.family)
    if cls is None:
        raise SRError(
            f"the bundle holds a {manifest.pipeline.family!r} model; this runtime runs {', '.join(FAMILIES)}"
        )
    return cls(bundle, manifest)


class Upscaler:
    """x4 super-resolution with an engine bundle."""

    def __init__(self, manifest: Manifest, chain: TileChain, sessions: dict[str, EngineSession], family: Family):
        self.manifest = manifest
        self._chain = chain
        self.sessions = sessions  # one per graph: benchmarks time them one by one
        self._family = family

    @classmethod
    def from_bundle(
        cls, path: str | Path, backend: str | None = None, options: RuntimeOptions | None = None
    ) -> Upscaler:
        """Opens a bundle; ``backend`` defaults to the one it was built for (anything else is refused)."""
        bundle = Path(path)
        manifest = read_manifest(bundle, TOOL_VERSION)
        engine_backend = backend_for(backend or manifest.backend, options)
        engine_backend.check(manifest)
        family = family_for(bundle, manifest)
        if manifest.demo:
            log.warning("%s is a DEMO bundle (random weights): its outputs are NOT meaningful", bundle)
        sessions = engine_backend.open(bundle, manifest)
        plans = lru_cache(maxsize=4)(family.plan)  # a full batch and the last, partial one
        return cls(manifest, engine_backend.chain(sessions, plans, manifest.pipeline.batch), sessions, family)

    @property
    def demo(self) -> bool:
        return self.manifest.demo

    @property
    def family(self) -> str:
        return self._family.name

    def run_tiles(self, lr: np.ndarray, *noises: np.ndarray) -> np.ndarray:
        """LR tiles (n,3,P,P) in [0,1] (InvSR: and the predictor and VAE noises) -> SR tiles (n,3,4P,4P)
        float32, unclamped; n <= the bundle's batch."""
        arrays = (lr, *noises)
        if len(arrays) != len(self._family.feeds):
            raise SRError(f"a {self.family} bundle takes {', '.join(self._family.feeds)} per tile batch, "
                          f"got {len(arrays)} arrays")
        return np.asarray(self._chain(dict(zip(self._family.feeds, arrays, strict=True))), dtype=np.float32)

    def upscale(
        self,
        image: np.ndarray,
        color_fix: str | None = None,
        seed: int | None = None,
        on_tiles_done: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """``image`` (H,W,3) float32 in [0,1] -> (4H,4W,3) float32 in [0,1]; ``color_fix`` and ``seed``
        are InvSR's (other families refuse them)."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise SRError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
        return self._family.upscale(image, self._chain, color_fix, seed, on_tiles_done)
