"""The graph an ONNX Runtime CPU bundle carries: the exported graph with the CPU rewrites, the blocked
layout's (``cpu_layout``) and the cheaper convolutions' (``cpu_convolutions``), reading only the
weights the rewrites read (``graph_file``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx_graphsurgeon as gs

from .cpu_convolutions import ConvolutionRewrites, rewrite_convolutions, spatial_sides, weights_read
from .cpu_layout import scalar_mul_as_batchnorm
from .graph_file import load_graph, load_weights, write_graph


@dataclass(frozen=True)
class CpuGraphRewrites:
    scalar_muls: int
    convolutions: ConvolutionRewrites

    def __bool__(self) -> bool:
        return any(count for count, _ in self._counts())

    def __str__(self) -> str:
        """What was rewritten ("" for nothing), for the build log and the manifest."""
        return ", ".join(f"{count} {what}" for count, what in self._counts() if count)

    def _counts(self) -> list[tuple[int, str]]:
        return [(self.scalar_muls, "scalar Mul(s) as BatchNormalization"), *self.convolutions.counts()]


def write_cpu_graph(src: Path, dst: Path, input_shapes: dict[str, list[int]], winograd: bool) -> CpuGraphRewrites:
    """``src`` rewritten for ONNX Runtime's CPU, written to ``dst``; ``input_shapes``: the sizes the bundle
    is built for, which decide where Winograd pays."""
    model = load_graph(src)
    scalar_muls = scalar_mul_as_batchnorm(model)
    sides = spatial_sides(model, input_shapes) if winograd else None
    read = weights_read(gs.import_onnx(model), sides)
    load_weights(model, src.parent, lambda tensor: tensor.name in read)
    graph = gs.import_onnx(model)
    rewrites = CpuGraphRewrites(scalar_muls, rewrite_convolutions(graph, sides))
    write_graph(graph, src, dst, bool(rewrites))
    return rewrites
