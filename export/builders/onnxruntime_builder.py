"""ONNX Runtime "engines" are the cleaned ONNX graphs themselves: the bundle gets a copy of each,
rewritten for the CPU's blocked convolution layout where the engines run on the CPU (``cpu_layout``),
and with ``--optimize-for-this-cpu`` saved as ONNX Runtime optimises it on this CPU (``cpu_offline``)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from sr_runtime.cpu_target import this_cpu

from ..bundle import copy_file
from ..graph_spec import GraphSpec
from .backends import BuiltEngine, EngineBuilder
from .cpu_layout import write_cpu_graph
from .cpu_offline import save_optimised_graph

log = logging.getLogger(__name__)


class OnnxCopier(EngineBuilder):
    def __init__(self, cpu_layout: bool, optimize_offline: bool = False):
        self.cpu_layout = cpu_layout
        self.optimize_offline = optimize_offline
        self.cpu_target = this_cpu() if optimize_offline else None

    def build(self, onnx_file: Path, folder: Path, spec: GraphSpec, profile: dict) -> BuiltEngine:
        if not self.optimize_offline:
            return self._copy(onnx_file, folder, spec)
        # The optimised graph takes the bundle's file names, so the graph it is made from waits beside them.
        scratch = folder / f".{spec.name}.unoptimised"
        scratch.mkdir()
        try:
            graph = self._copy(onnx_file, scratch, spec).files[0]
            log.info("%s: saving ONNX Runtime's optimised graph for %s", spec.name, self.cpu_target)
            return BuiltEngine(save_optimised_graph(graph, folder))
        finally:
            shutil.rmtree(scratch)

    def _copy(self, onnx_file: Path, folder: Path, spec: GraphSpec) -> BuiltEngine:
        """The graph and its external-data file, if it has one."""
        graph = folder / onnx_file.name
        if self.cpu_layout:
            rewritten = write_cpu_graph(onnx_file, graph)
            log.info("%s: %d scalar Mul(s) as BatchNormalization for the CPU layout", spec.name, rewritten)
        else:
            copy_file(onnx_file, graph)
        data = onnx_file.with_name(onnx_file.name + ".data")
        if not data.exists():
            return BuiltEngine([graph])
        copy_file(data, folder / data.name)
        return BuiltEngine([graph, folder / data.name])
