"""ONNX Runtime "engines" are the cleaned ONNX graphs themselves: the bundle gets a copy of each."""

from __future__ import annotations

from pathlib import Path

from ..bundle import copy_file
from ..graph_spec import GraphSpec
from .backends import BuiltEngine, EngineBuilder


class OnnxCopier(EngineBuilder):
    def build(self, onnx_file: Path, folder: Path, spec: GraphSpec, profile: dict) -> BuiltEngine:
        """The graph and its external-data file, if it has one."""
        files = []
        for src in (onnx_file, onnx_file.with_name(onnx_file.name + ".data")):
            if src.exists():
                copy_file(src, folder / src.name)
                files.append(folder / src.name)
        return BuiltEngine(files)
