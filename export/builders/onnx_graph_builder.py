"""ONNX Runtime "engines" are the cleaned ONNX graphs themselves: the bundle gets a copy of each,
rewritten for the CPU where the engines run on it (``cpu_graph``: the blocked layout, cheaper
convolutions), and with ``--optimize-for-this-cpu`` saved as ONNX Runtime optimises it on this CPU
(``cpu_offline``); for CUDA with its GroupNorms fused (``cuda_graph``)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from sr_runtime.cpu_target import this_cpu

from ..atomic_folders import copy_file
from ..graph_spec import GraphSpec
from .cpu_graph import write_cpu_graph
from .cpu_offline import save_optimised_graph
from .cuda_graph import write_cuda_graph
from .engine_builder import BuiltEngine, EngineBuilder

log = logging.getLogger(__name__)


class OnnxGraphBuilder(EngineBuilder):
    def __init__(self, for_cpu: bool, optimize_offline: bool = False, winograd: bool = True,
                 fused_group_norm: bool = True):
        self.for_cpu = for_cpu  # the engines run on the CPU: its graph rewrites apply, else CUDA's
        self.optimize_offline = optimize_offline
        self.winograd = winograd
        self.fused_group_norm = fused_group_norm
        self.cpu_target = this_cpu() if optimize_offline else None

    def build(self, onnx_file: Path, folder: Path, spec: GraphSpec, profile: dict) -> BuiltEngine:
        if not self.optimize_offline:
            return self._copy(onnx_file, folder, spec, profile)
        # The optimised graph takes the bundle's file names, so the graph it is made from waits beside them.
        scratch = folder / f".{spec.name}.unoptimised"
        scratch.mkdir()
        try:
            copied = self._copy(onnx_file, scratch, spec, profile)
            log.info("%s: saving ONNX Runtime's optimised graph for %s", spec.name, self.cpu_target)
            return BuiltEngine(save_optimised_graph(copied.files[0], folder), rewrites=copied.rewrites)
        finally:
            shutil.rmtree(scratch)

    def _copy(self, onnx_file: Path, folder: Path, spec: GraphSpec, profile: dict) -> BuiltEngine:
        """The graph and its external-data file, if it has one."""
        graph = folder / onnx_file.name
        rewrites = ""
        if self.for_cpu:
            built_for = {name: shapes[1] for name, shapes in profile.items()}  # the profile's opt shapes
            rewrites = str(write_cpu_graph(onnx_file, graph, built_for, self.winograd))
            log.info("%s: %s", spec.name, rewrites or "nothing to rewrite for the CPU")
        elif self.fused_group_norm:
            rewrites = write_cuda_graph(onnx_file, graph)
            log.info("%s: %s", spec.name, rewrites or "no GroupNorm to fuse")
        else:
            copy_file(onnx_file, graph)
        files = [graph]
        data = onnx_file.with_name(onnx_file.name + ".data")
        if data.exists():
            copy_file(data, folder / data.name)
            files.append(folder / data.name)
        return BuiltEngine(files, rewrites=rewrites)
