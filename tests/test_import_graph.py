"""The import graph of both packages, read from the source (imports inside functions included: a lazy import is
still a dependency): the bundle contract depends on no plug-in, the backend registry on no builder that imports it
back, and neither sits on a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"sr_export": ROOT / "export", "sr_runtime": ROOT / "runtime"}


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def _imported(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package modules ``module`` imports (``from x import name`` counts x.name where that is a module)."""
    is_package = path.name == "__init__.py"
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + is_package]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return {name for name in names if name in known and name != module}


def import_graph() -> dict[str, set[str]]:
    known = _modules()
    return {module: _imported(module, path, known) for module, path in known.items()}


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def cycle_through(graph: dict[str, set[str]], module: str) -> list[str] | None:
    """A shortest import path from ``module`` back to itself, if there is one."""
    paths, frontier = {module: [module]}, [module]
    while frontier:
        following = []
        for current in frontier:
            for nxt in sorted(graph[current]):
                if nxt == module:
                    return [*paths[current], module]
                if nxt not in paths:
                    paths[nxt] = [*paths[current], nxt]
                    following.append(nxt)
        frontier = following
    return None


GRAPH = import_graph()


def test_the_graph_reads_lazy_and_relative_imports():
    """The reader sees what the checks below rely on: relative imports, package imports and imports inside
    functions (the pipeline opens a backend lazily, the registry imports its builders when asked)."""
    assert "sr_runtime.manifest" in GRAPH["sr_runtime.bundle_manifest"]
    assert "sr_runtime.families" in GRAPH["sr_runtime.bundle_manifest"]
    assert "sr_export.builders.onnx_graph_builder" in GRAPH["sr_export.builders.backends"]  # inside a method
    assert cycle_through({"a": {"b"}, "b": {"c"}, "c": {"a"}}, "a") == ["a", "b", "c", "a"]
    assert cycle_through({"a": {"b"}, "b": set()}, "a") is None


def test_the_bundle_contract_depends_on_no_family():
    leaks = sorted(m for m in reachable(GRAPH, "sr_runtime.manifest") if ".families" in m)
    assert not leaks, f"sr_runtime.manifest reaches {leaks}"


@pytest.mark.parametrize("module", ["sr_runtime.manifest", "sr_runtime.records", "sr_export.builders.backends",
                                    "sr_export.builders.engine_builder", "sr_export.metrics"])
def test_no_import_cycle_through(module):
    assert cycle_through(GRAPH, module) is None


@pytest.mark.parametrize("builder", ["engine_builder", "onnx_graph_builder", "tensorrt_builder"])
def test_the_engine_builders_do_not_import_their_registry(builder):
    assert "sr_export.builders.backends" not in reachable(GRAPH, f"sr_export.builders.{builder}")
