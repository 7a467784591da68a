"""The runtime's entry point: open an engine bundle and upscale images by chaining its engines.

Per tile batch: vae_encoder -> noise_predictor -> unet_step x N -> vae_decoder, with every constant
(timesteps, sigmas, prompt embeddings) taken from the bundle, never recomputed here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np

from .backends import backend_for
from .backends.base import REBUILD_HINT, Call, ChainPlan, RuntimeOptions, TileChain
from .errors import SRError
from .manifest import PROMPT_EMBEDS_NAME, Manifest, read_manifest
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
    for call in invsr_calls(p.steps):
        graph = manifest.graphs.get(call.graph)
        if graph is None:
            raise SRError(f"the bundle has no {call.graph} graph; {REBUILD_HINT}")
        have = ({t.name for t in graph.inputs}, {t.name for t in graph.outputs})
        want = (set(call.inputs), set(call.outputs))
        if have != want:
            raise SRError(
                f"graph {call.graph} has inputs {sorted(have[0])} and outputs {sorted(have[1])}, the runtime binds "
                f"{sorted(want[0])} and {sorted(want[1])}; {REBUILD_HINT}"
            )


def load_prompt_embeds(bundle: Path, manifest: Manifest) -> np.ndarray:
    path = bundle / PROMPT_EMBEDS_NAME
    try:
        embeds = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise SRError(f"{path} is unreadable ({err}); {REBUILD_HINT}") from err
    expected = tuple(manifest.pipeline.embed_shape)
    if embeds.shape != expected or embeds.ndim != 3 or embeds.shape[0] != 1:
        raise SRError(f"{path} has shape {embeds.shape}, the manifest says {expected} (1, tokens, dim); {REBUILD_HINT}")
    return embeds.astype(np.float32)


class Upscaler:
    """x4 super-resolution with an engine bundle."""

    def __init__(self, manifest: Manifest, chain: TileChain):
        self.manifest = manifest
        self._chain = chain

    @classmethod
    def from_bundle(
        cls, path: str | Path, backend: str | None = None, options: RuntimeOptions | None = None
    ) -> Upscaler:
        """Opens a bundle; ``backend`` defaults to the one it was built for (anything else is refused)."""
        bundle = Path(path)
        manifest = read_manifest(bundle, TOOL_VERSION)
        engine_backend = backend_for(backend or manifest.backend, options)
        engine_backend.check(manifest)
        check_invsr_bundle(manifest)
        embeds = load_prompt_embeds(bundle, manifest)
        if manifest.demo:
            log.warning("%s is a DEMO bundle (random weights): its outputs are NOT meaningful", bundle)
        sessions = engine_backend.open(bundle, manifest)

        @lru_cache(maxsize=4)  # a full batch and the last, partial one
        def plans(batch: int) -> ChainPlan:
            return invsr_plan(manifest, embeds, batch)

        return cls(manifest, engine_backend.chain(sessions, plans, manifest.pipeline.batch))

    @property
    def demo(self) -> bool:
        return self.manifest.demo

    def run_tiles(self, lr: np.ndarray, predictor_noise: np.ndarray, vae_noise: np.ndarray) -> np.ndarray:
        """LR tiles (n,3,P,P) in [0,1] and their noises -> SR tiles (n,3,4P,4P) float32; n <= the bundle's batch."""
        feeds = {"lr": lr, "predictor_noise": predictor_noise, "vae_noise": vae_noise}
        return np.asarray(self._chain(feeds), dtype=np.float32)

    def upscale(
        self,
        image: np.ndarray,
        color_fix: str | None = None,
        seed: int | None = None,
        on_tiles_done: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """``image`` (H,W,3) float32 in [0,1] -> (4H,4W,3) float32 in [0,1]."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise SRError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
        p = self.manifest.pipeline
        settings = UpscaleSettings(tile=p.tile, batch=p.batch, color_fix=color_fix, seed=seed)
        return upscale_array(image, self.run_tiles, settings, p.steps, on_tiles_done)
