"""ResShift's three networks as the runtime binds them (the export side traces its torch stages to these).

Symbolic dimensions: ``batch`` (patches per call), ``height`` and ``width`` (the padded LR patch, which
is also the latent's size: the VQ-f4 autoencoder undoes the x4 bicubic upsampling), ``out_height`` and
``out_width`` (x4), and, fixed at export, ``latent_channels``. Every spatial axis is dynamic: one graph
serves every padded patch size, as the official sampler runs whatever size the padding gives.
"""

from __future__ import annotations

from ...graph_io import Dims, GraphIO, TensorIO

SCALE = 4  # x4 only: the UNet concatenates the LR patch with a latent of the same size (VQ factor = scale)
FIXED_DIMS = frozenset({"latent_channels"})
LR = TensorIO("lr", ("batch", 3, "height", "width"))  # in [0, 1]; the graphs map it to [-1, 1]


def _latent(name: str) -> TensorIO:
    return TensorIO(name, ("batch", "latent_channels", "height", "width"))


def _scalar(name: str) -> TensorIO:
    return TensorIO(name, (1,), scalar=True)


# LR patch -> bicubic x4 -> VQ encoder -> z_y; the prior sample z_T = z_y + prior_scale * noise
VQ_ENCODER = GraphIO("vq_encoder", (LR, _latent("noise"), _scalar("prior_scale")), (_latent("latent"),),
                     FIXED_DIMS)
# One sampling step: x0 = UNet(x_t / input_divisor, t, LR), then the posterior sample
# x_{t-1} = coef_latent * x_t + coef_x0 * x0 + noise_std * noise (SinSR's one step: 0, 1, 0 -> x0)
UNET_STEP = GraphIO(
    "unet_step",
    (_latent("latent"), LR, _scalar("timestep"), _scalar("input_divisor"), _scalar("coef_latent"),
     _scalar("coef_x0"), _scalar("noise_std"), _latent("noise")),
    (_latent("latent_next"),),
    FIXED_DIMS,
)
# latent -> nearest codebook entry (fp32 argmin) -> VQ decoder -> image in about [-1, 1], unclamped
VQ_DECODER = GraphIO("vq_decoder", (_latent("latent"),), (TensorIO("image", ("batch", 3, "out_height", "out_width")),),
                     FIXED_DIMS)

# In the order the runtime runs them.
GRAPHS: tuple[GraphIO, ...] = (VQ_ENCODER, UNET_STEP, VQ_DECODER)


def dims(batch: int, height: int, width: int, latent_channels: int) -> Dims:
    """The symbolic dimensions' values for ``batch`` padded patches of ``height`` x ``width`` LR px."""
    return {
        "batch": batch,
        "height": height,
        "width": width,
        "out_height": SCALE * height,
        "out_width": SCALE * width,
        "latent_channels": latent_channels,
    }
