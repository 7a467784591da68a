"""What each exported network takes and gives: tensor names, symbolic dimensions, scalar inputs.

Each network's ``GraphIO`` is written once, on the runtime side (it needs no torch): the export side
wraps it with the torch module and sample values (``sr_export.graph_spec``), the bundle builder
records it in the manifest, and the runtime binds its chain of engine calls to it (``GraphIO.call``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .precision import Precision

Dims = Mapping[str, int]


@dataclass(frozen=True)
class TensorIO:
    name: str
    dims: tuple[str | int, ...]  # symbolic names are valued per tile batch (``Dims``)
    # Scalars (timesteps, σ) stay fp32 in every precision: the σ arithmetic is where fp16 breaks.
    scalar: bool = False

    def precision(self, bundle: Precision) -> Precision:
        return Precision.FP32 if self.scalar else bundle.io

    def shape(self, dims: Dims) -> tuple[int, ...]:
        return tuple(dims[d] if isinstance(d, str) else d for d in self.dims)


@dataclass(frozen=True)
class Call:
    """One engine call: which buffer feeds each graph input and receives each graph output."""

    graph: str
    inputs: Mapping[str, str]
    outputs: Mapping[str, str]


@dataclass(frozen=True)
class GraphIO:
    name: str
    inputs: tuple[TensorIO, ...]
    outputs: tuple[TensorIO, ...]
    # Symbolic dimensions fixed when the graph is exported (a text embedding's width), not dynamic axes.
    fixed_dims: frozenset[str] = field(default_factory=frozenset)

    @property
    def tensors(self) -> tuple[TensorIO, ...]:
        return (*self.inputs, *self.outputs)

    def dynamic_dims(self) -> set[str]:
        return {d for t in self.tensors for d in t.dims if isinstance(d, str)} - self.fixed_dims

    def call(self, **buffers: str) -> Call:
        """A call of this graph; each tensor is bound to the buffer of its own name unless ``buffers``
        names another one."""
        names = {t.name for t in self.tensors}
        if unknown := set(buffers) - names:
            raise ValueError(f"graph {self.name} has no tensor(s) {sorted(unknown)}")
        return Call(
            self.name,
            {t.name: buffers.get(t.name, t.name) for t in self.inputs},
            {t.name: buffers.get(t.name, t.name) for t in self.outputs},
        )
