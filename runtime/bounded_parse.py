"""Reading the JSON and YAML files a user hands us (configs, manifests, run records, cache markers) with
bounds, so a small hostile file cannot hang a run or take its memory.

A few kilobytes can describe an exponential document: YAML aliases of aliases ("billion laughs"), merge
keys of merge keys, or nesting a hundred thousand levels deep, which Python's parsers follow by recursion.
Every file is read whole up to a size limit, must be UTF-8 text, and is parsed into a document whose
nesting depth and *expanded* size (an alias counts every time it is used) are bounded before anything
walks it. Numbers must be finite: a NaN or infinity in a config is never what its author meant.
Every problem is an ``SRError`` naming the file.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from .errors import SRError

MAX_BYTES = 16 * 2**20
MAX_DEPTH = 64
# Values in the document, counting every use of a YAML alias: the largest official config has about 300.
MAX_VALUES = 200_000


class _TooLarge(Exception):
    pass


def regular_file(path: Path, what: str) -> os.stat_result:
    """``path``'s status, refusing what is not a regular file before it is opened: reading a pipe waits for a
    writer for ever, a device such as /dev/zero never ends."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise SRError(f"{what} {path} not found") from None
    except OSError as err:
        raise SRError(f"{what} {path} cannot be read ({err.strerror or err})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a pipe, socket or device"
        raise SRError(f"{what} {path} is not a regular file ({kind})")
    return info


def read_text(path: Path, what: str, max_bytes: int = MAX_BYTES) -> str:
    """The file's text: a regular file of at most ``max_bytes`` bytes, in UTF-8."""
    info = regular_file(path, what)
    try:
        if info.st_size > max_bytes:
            raise SRError(f"{what} {path} is {info.st_size:,} bytes, above the limit of {max_bytes:,}")
        with open(path, "rb") as file:
            data = file.read(max_bytes + 1)
    except OSError as err:
        raise SRError(f"{what} {path} cannot be read ({err.strerror or err})") from None
    if len(data) > max_bytes:  # it grew since the stat
        raise SRError(f"{what} {path} is above the limit of {max_bytes:,} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SRError(f"{what} {path} is not UTF-8 text (byte {err.start}: {data[err.start]:#04x}); is it a binary "
                      "file?") from None


def check_document(value: Any, where: str, max_values: int = MAX_VALUES) -> None:
    """Refuses a parsed document deeper than ``MAX_DEPTH``, of more than ``max_values`` values (counted as
    expanded: a shared or recursive YAML node counts each time it is reached) or holding a non-finite number."""
    budget = [max_values]

    def walk(node: Any, depth: int, at: str) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            raise SRError(f"{where}: more than {max_values:,} values once its aliases are expanded")
        if depth > MAX_DEPTH:
            raise SRError(f"{where}: nested deeper than {MAX_DEPTH} levels (at {at or 'the top'})")
        if isinstance(node, float) and not math.isfinite(node):
            raise SRError(f"{where}: {at or 'the value'} is {node}, not a finite number")
        if isinstance(node, dict):
            for key, item in node.items():
                walk(key, depth + 1, at)
                walk(item, depth + 1, f"{at}.{key}" if at else str(key))
        elif isinstance(node, list | tuple | set):
            for i, item in enumerate(node):
                walk(item, depth + 1, f"{at}[{i}]")

    walk(value, 0, "")


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_json(text: str, where: str, max_values: int = MAX_VALUES) -> Any:
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise SRError(f"{where}: nested too deeply to parse") from None
    except ValueError as err:  # JSONDecodeError included
        raise SRError(f"{where}: not valid JSON ({err})") from None
    check_document(document, where, max_values)
    return document


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a document whose node graph is too deep or, expanded, too large before
    it is constructed (construction follows aliases and merge keys, and recurses per level)."""

    def compose_node(self, parent, index):
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooLarge(f"nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node):
        _check_nodes(node)
        return super().construct_document(node)


def _check_nodes(root: yaml.Node) -> None:
    budget = MAX_VALUES
    stack: list[tuple[yaml.Node, int]] = [(root, 0)]
    while stack:  # iterative: a recursive node graph must not exhaust the interpreter's stack
        node, depth = stack.pop()
        budget -= 1
        if budget < 0:
            raise _TooLarge(f"more than {MAX_VALUES:,} values once its aliases are expanded")
        if depth > MAX_DEPTH:
            raise _TooLarge(f"nested deeper than {MAX_DEPTH} levels once its aliases are expanded")
        if isinstance(node, yaml.SequenceNode):
            stack.extend((item, depth + 1) for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            stack.extend((part, depth + 1) for pair in node.value for part in pair)


def parse_yaml(text: str, where: str) -> Any:
    try:
        document = yaml.load(text, Loader=_BoundedLoader)
    except _TooLarge as err:
        raise SRError(f"{where}: {err}") from None
    except RecursionError:
        raise SRError(f"{where}: nested too deeply to parse") from None
    except ValueError as err:  # an integer of thousands of digits, which Python refuses to convert
        raise SRError(f"{where}: not valid YAML ({err})") from None
    except yaml.YAMLError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SRError(f"{where}: not valid YAML ({first})") from None
    check_document(document, where)
    return document


def read_json(path: Path, what: str, max_bytes: int = MAX_BYTES, max_values: int = MAX_VALUES) -> Any:
    return parse_json(read_text(path, what, max_bytes), f"{what} {path}", max_values)


def read_yaml(path: Path, what: str, max_bytes: int = MAX_BYTES) -> Any:
    """YAML (JSON is YAML too, but a ``.json`` file is parsed as JSON, with JSON's errors)."""
    parse: Callable[[str, str], Any] = parse_json if Path(path).suffix.lower() == ".json" else parse_yaml
    return parse(read_text(path, what, max_bytes), f"{what} {path}")
