"""RRDBNet's one network as the runtime binds it: dynamic in batch, height and width."""

from __future__ import annotations

from ...graph_io import Dims, GraphIO, TensorIO

SCALE = 4  # x2 / x1 RRDBNets (pixel-unshuffle first) are not exported

# LR RGB in [0, 1] -> RRDBNet x4 -> SR RGB (unclamped: an fp16 overflow stays visible; the runtime clamps)
RRDBNET = GraphIO(
    "rrdbnet",
    (TensorIO("lr", ("batch", 3, "height", "width")),),
    (TensorIO("image", ("batch", 3, "out_height", "out_width")),),
)
GRAPHS: tuple[GraphIO, ...] = (RRDBNET,)
# The engines take any tile of 1..tile px per side: images smaller than a tile run at their own size.
MIN_SIDE = 1


def dims(batch: int, height: int, width: int) -> Dims:
    return {"batch": batch, "height": height, "width": width, "out_height": SCALE * height, "out_width": SCALE * width}
