"""ONNX Runtime's graph optimisations done once, at build time, instead of at every session start.

At the highest level ONNX Runtime converts convolutions to its blocked (NCHWc) layout and reorders their
weights; for SD-Turbo's UNet that takes 14 of the 16 s a CPU session needs to open. The saved graph keeps
the layout of this CPU's instruction sets, so the manifest records them and the runtime refuses the
bundle on a CPU that differs (``sr_runtime.backends.onnxruntime``).
"""

from __future__ import annotations

from pathlib import Path

# Weights above this size go to the external-data file (a graph of over 2 GB cannot be one protobuf).
EXTERNAL_MIN_BYTES = 1024


def save_optimised_graph(graph: Path, folder: Path) -> list[Path]:
    """``graph`` as ONNX Runtime's CPU provider optimises it, saved into ``folder`` under the same name:
    [graph, its external-data file]."""
    import onnxruntime as ort

    target = folder / graph.name
    data = target.with_name(target.name + ".data")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(target)
    options.add_session_config_entry("session.optimized_model_external_initializers_file_name", data.name)
    options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes",
                                     str(EXTERNAL_MIN_BYTES))
    options.log_severity_level = 3  # its warning that the graph is hardware-specific: the manifest says so
    ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    return [target, data] if data.exists() else [target]
