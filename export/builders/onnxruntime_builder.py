"""ONNX Runtime "engines" are the cleaned ONNX graphs themselves: the bundle gets a copy of each,
rewritten for the CPU's blocked convolution layout where the engines run on the CPU (``cpu_layout``)."""

from __future__ import annotations

import logging
from pathlib import Path

from ..bundle import copy_file
from ..graph_spec import GraphSpec
from .backends import BuiltEngine, EngineBuilder
from .cpu_layout import write_cpu_graph

log = logging.getLogger(__name__)


class OnnxCopier(EngineBuilder):
    def __init__(self, cpu_layout: bool):
        self.cpu_layout = cpu_layout

    def build(self, onnx_file: Path, folder: Path, spec: GraphSpec, profile: dict) -> BuiltEngine:
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
