"""The OSEDiff-1 row of Table 7: one 128 -> 512 image end to end (the official defaults: no tiling at this size,
the AdaIN colour fix, the tagger and the text encoder included, as the official timing script runs them), and its
stages.

Parameters: the paper's 8.50 M is OSEDiff's training-time count: the generator's UNet LoRA, its VAE-encoder LoRA
and retrained conv_in, plus the LoRA of the regulariser's UNet (the same layers and rank), which is trained for
the VSD loss only and not in osediff.pkl. The row counts them from the checkpoint, and says how many run at
inference (the regulariser's LoRA does not).
"""

from __future__ import annotations

from sr_runtime.families.osediff.options import OSEDiffOptions
from sr_runtime.precision import Precision

from ...bench import family as bench
from ...cache import cache_root, cached_folder
from ...reporting import Report
from ...sd.bench import engine_runner, reference_runner
from .checkpoint import OSEDiffCheckpoint
from .graphs import GRAPHS
from .locate import OSEDiffPaths, find_checkpoints
from .reference import OSEDiffReference
from .source import OSEDiffSource, load_source

STAGE_LABELS = {"tagger": "RAM tagger", "text_encoder": "text encoder", "vae_encoder": "VAE encoder",
                "unet": "UNet", "vae_decoder": "VAE decoder"}
# Each graph's module in the reference, by graph.
MODULES = {"tagger": "tagger", "text_encoder": "text_encoder", "vae_encoder": "encoder", "unet": "unet",
           "vae_decoder": "decoder"}


def full_random_checkpoints(report: Report) -> OSEDiffPaths:
    """Full-width SD-2.1-base, RAM Swin-L and DAPE with random weights (the official ranks), cached."""
    from .random_checkpoints import write_random_osediff
    from .source import demo_paths

    return demo_paths(cached_folder(cache_root() / "bench-checkpoints" / "osediff-full-seed0",
                                    lambda tmp: write_random_osediff(tmp, seed=0, size="full"), report,
                                    "full-size random-weight OSEDiff checkpoints"))


def parameter_counts(ck: OSEDiffCheckpoint) -> tuple[float, float]:
    """(inference, training) millions: the checkpoint's LoRA and conv_in, then with the regulariser's UNet LoRA."""
    unet_lora = sum(v.numel() for k, v in ck.unet_state.items() if ".lora_" in k)
    conv_in = sum(v.numel() for k, v in ck.unet_state.items() if k.startswith("conv_in.base_layer."))
    vae_lora = sum(v.numel() for v in ck.vae_state.values())
    inference = unet_lora + conv_in + vae_lora
    return inference / 1e6, (inference + unet_lora) / 1e6


class OSEDiffBench(bench.BenchFamily):
    name = "osediff"
    methods = {"OSEDiff-1": 1}

    def __init__(self, sd21=None, checkpoint=None, ram=None, dape=None, ram_data=None, report: Report = print):
        self._given = (sd21, checkpoint, ram, dape, ram_data)
        self._report = report
        self._source: OSEDiffSource | None = None
        self.weights = "checkpoints" if any(self._given) else "random (full size)"

    @property
    def source(self) -> OSEDiffSource:
        if self._source is None:
            paths = find_checkpoints(*self._given) if any(self._given) else full_random_checkpoints(self._report)
            self._source = load_source(paths, False, self._report)
        return self._source

    def params(self, method: bench.Method) -> bench.ParamCount:
        inference, training = parameter_counts(self.source.components.checkpoint)
        return bench.ParamCount(training, f"the paper's training-time count: UNet and VAE-encoder LoRA, UNet conv_in and "
                                          f"the regulariser's UNet LoRA; {inference:.2f} M of it run at inference")

    def backends(self, device: str) -> list[tuple[bench.BenchBackend, Precision]]:
        # PyTorch rows in fp32 (this reference's precision), also on the GPU, where the engines run fp16.
        return [(backend, Precision.FP32 if isinstance(backend, bench.TorchMode) else precision)
                for backend, precision in super().backends(device)]

    def runner(self, method: bench.Method, backend: bench.BenchBackend, precision: Precision, device: str,
               batch: int) -> bench.Runner:
        if not isinstance(backend, bench.TorchMode):
            return engine_runner(self.source, GRAPHS, STAGE_LABELS, "osediff", backend, precision, batch, self._report,
                                 _large_tiles)
        if precision is not Precision.FP32:
            raise NotImplementedError("the OSEDiff reference runs in fp32")
        reference = OSEDiffReference(self.source.components, device=device, batch=batch)
        return reference_runner(reference, MODULES, OSEDiffOptions(), self.source, GRAPHS, STAGE_LABELS, backend, device,
                                _large_tiles)


def _large_tiles(section) -> int:
    from sr_runtime.families.osediff.image_loop import tiling

    return tiling(bench.LARGE, bench.LARGE, section, OSEDiffOptions()).unet_tiles
