"""Typed records from JSON: every field of a (nested) dataclass checked against its annotation.

The manifest is hand-editable text; a wrong type anywhere (``"tile": "128"``, ``"sigmas": null``) must
be one clear line naming the field, not a traceback deep in the runtime. One parser serves the
manifest's core and every family's own section.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from enum import Enum
from typing import Any, Union

from .errors import SRError


class RecordError(SRError):
    """A field of a record has the wrong type or is missing; the message names it."""


def _type_name(hint: Any) -> str:
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def _parse(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        last: RecordError | None = None
        for option in options:
            if option is type(None):
                continue
            try:
                return _parse(option, value, where)
            except RecordError as err:
                last = err
        raise last or RecordError(f"{where} must be {_type_name(hint)}, got {value!r}")
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise RecordError(f"{where} must be a list, got {value!r}")
        return [_parse(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_type, item = typing.get_args(hint)
        if not isinstance(value, dict) or not all(isinstance(k, key_type) for k in value):
            raise RecordError(f"{where} must be an object with {key_type.__name__} keys, got {value!r}")
        return {k: _parse(item, v, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return parse_record(hint, value, where)
    if isinstance(hint, type) and issubclass(hint, Enum):
        try:
            return hint(value)
        except ValueError:
            choices = ", ".join(str(m.value) for m in hint)
            raise RecordError(f"{where} must be one of {choices}, got {value!r}") from None
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise RecordError(f"{where} must be a finite number, got {value!r}")
        return float(value)
    if hint is int and isinstance(value, bool):
        raise RecordError(f"{where} must be an integer, got {value!r}")
    if isinstance(hint, type) and not isinstance(value, hint):
        raise RecordError(f"{where} must be {_type_name(hint)}, got {value!r}")
    return value


T = typing.TypeVar("T")


def parse_record(cls: type[T], data: Any, where: str) -> T:
    """``cls`` (a dataclass) from ``data`` (parsed JSON); fields with defaults may be absent, unknown
    fields are refused (a misspelt field must not silently fall back to its default)."""
    if not isinstance(data, dict):
        raise RecordError(f"{where} must be an object, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    if unknown := sorted(set(data) - set(fields)):
        raise RecordError(f"{where} has unknown field(s) {', '.join(unknown)}")
    values = {}
    for name, field in fields.items():
        if name in data:
            values[name] = _parse(hints[name], data[name], f"{where}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise RecordError(f"{where} lacks the field {name}")
    return cls(**values)


def record_dict(record: Any) -> dict:
    """A record as JSON-ready data (enums as their values)."""
    return json_ready(dataclasses.asdict(record))


def json_ready(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value
