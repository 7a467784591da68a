"""ResShift's exported graphs: the runtime's GraphIO of each stage with the torch module it is traced from
and plausible sample inputs (v3's first step).

Every spatial axis is dynamic, so the graphs are traced on small patches whatever tile the bundle is
built for: tracing runs the network once (in fp16 too, where CPU convolutions are slow), and at a 512-px
patch that would cost what running one costs (a 2048-px VQ encoder pass and an 8192-code distance matrix
per latent pixel) for the same graph. The UNet is traced on the smallest padded patch; the autoencoder,
fully convolutional around its x4 / 4 resampling, on a 16-px one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sr_runtime.families.resshift import graphs as io
from sr_runtime.graph_io import Dims
from sr_runtime.precision import Precision

from ...graph_spec import GraphSpec
from .stages import UNetStep, VQDecoderStage, VQEncoderStage

# resshift-v3's first call (t = 3) and its prior scale, rounded.
SAMPLE_SCALARS = {"prior_scale": 1.98, "timestep": 3.0, "input_divisor": 2.218197, "coef_latent": 0.591473,
                  "coef_x0": 0.408527, "noise_std": 0.973292}


AUTOENCODER_TRACE_SIDE = 16


@dataclass(frozen=True)
class PatchGraphSpec(GraphSpec):
    trace_side: int = AUTOENCODER_TRACE_SIDE  # LR px

    def sample_inputs(self, dims: Dims, precision: Precision, seed: int = 0) -> tuple[torch.Tensor, ...]:
        """Sample inputs of ``dims``' batch and channels on a ``trace_side`` patch (what export traces)."""
        side = self.trace_side
        patch = {"height": side, "width": side, "out_height": io.SCALE * side, "out_width": io.SCALE * side}
        return super().sample_inputs({**dims, **patch}, precision, seed)


def graph_specs(pad_multiple: int) -> tuple[PatchGraphSpec, ...]:
    """The three graphs in the order the runtime runs them; the UNet traced on ``pad_multiple`` px patches."""
    return (
        PatchGraphSpec(
            io.VQ_ENCODER,
            lambda c: VQEncoderStage(c.vq, c.config.diffusion.scale_factor),
            "LR patch -> [-1, 1] -> bicubic x4 -> VQ encoder -> z_y; z_T = z_y + prior_scale * noise",
            SAMPLE_SCALARS,
        ),
        PatchGraphSpec(
            io.UNET_STEP,
            lambda c: UNetStep(c.unet),
            "x_t, LR patch, t and the step's constants -> x0 = UNet(x_t / divisor, t, LR) -> posterior sample x_t-1",
            SAMPLE_SCALARS,
            trace_side=pad_multiple,
        ),
        PatchGraphSpec(
            io.VQ_DECODER,
            lambda c: VQDecoderStage(c.vq, c.config.diffusion.scale_factor),
            "latent -> nearest codebook entry (fp32 argmin) -> VQ decoder -> image in about [-1, 1]",
        ),
    )
