"""RRDBNet's one exported graph: the runtime's GraphIO with the network itself as the traced module
(no clamp, so an fp16 overflow stays visible in the output; the runtime clamps to [0, 1])."""

from __future__ import annotations

from sr_runtime.families.rrdbnet.graphs import RRDBNET as RRDBNET_IO

from ...graph_spec import GraphSpec

RRDBNET = GraphSpec(RRDBNET_IO, lambda model: model, "LR RGB in [0, 1] -> RRDBNet x4 -> SR RGB (unclamped)")
GRAPHS: tuple[GraphSpec, ...] = (RRDBNET,)
