"""One declarative spec per exported network: its ``GraphIO`` (names, dimensions: written once, on the
runtime side), the torch module it is traced from, and plausible sample inputs. Export, engine builds,
the manifest, benchmarks and the parity tests all read these specs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sr_runtime.graph_io import Dims, GraphIO, TensorIO
from sr_runtime.precision import Precision

TORCH_DTYPES = {Precision.FP32: torch.float32, Precision.FP16: torch.float16}


def torch_dtype(tensor: TensorIO, precision: Precision) -> torch.dtype:
    return TORCH_DTYPES[tensor.precision(precision)]


@dataclass(frozen=True)
class GraphSpec:
    io: GraphIO
    make_module: Callable[[Any], nn.Module]  # the family's components -> the torch module of this graph
    description: str
    # Sample values: inputs filled with one constant (a real timestep or σ), and inputs drawn in [0, 1]
    # (images); the rest are standard normal (latents, embeddings).
    constants: Mapping[str, float] = field(default_factory=dict)
    unit_range: frozenset[str] = frozenset({"lr"})

    @property
    def name(self) -> str:
        return self.io.name

    @property
    def inputs(self) -> tuple[TensorIO, ...]:
        return self.io.inputs

    @property
    def outputs(self) -> tuple[TensorIO, ...]:
        return self.io.outputs

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        dynamic = self.io.dynamic_dims()
        return {
            t.name: {i: d for i, d in enumerate(t.dims) if d in dynamic}
            for t in self.io.tensors
            if any(d in dynamic for d in t.dims)
        }

    def sample_inputs(self, dims: Dims, precision: Precision, seed: int = 0) -> tuple[torch.Tensor, ...]:
        gen = torch.Generator().manual_seed(seed)
        values = []
        for t in self.inputs:
            shape = t.shape(dims)
            if t.name in self.constants:
                v = torch.full(shape, self.constants[t.name])
            elif t.name in self.unit_range:
                v = torch.rand(shape, generator=gen)
            else:
                v = torch.randn(shape, generator=gen)
            values.append(v.to(torch_dtype(t, precision)))
        return tuple(values)

    def profile(self, dims_min: Dims, dims_opt: Dims, dims_max: Dims) -> dict[str, list[list[int]]]:
        """input name -> [min, opt, max] shapes (one optimization profile per graph)."""
        return {t.name: [list(t.shape(d)) for d in (dims_min, dims_opt, dims_max)] for t in self.inputs}
