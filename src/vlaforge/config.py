"""Typed, frozen dataclass configs: overrides from the command line, dict round trips.

Configs are frozen dataclasses, possibly nested. `apply_overrides(cfg, ["trunk.depth=4"])` returns a
new config with the dotted fields replaced, the string parsed to the field's declared type; an unknown
key raises `VlaforgeError` with a "did you mean" hint. `to_dict` / `from_dict` give the JSON form used
in `config.json` next to checkpoints (unknown keys in a file are an error, never silently dropped).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, TypeVar

from vlaforge.errors import VlaforgeError, did_you_mean

T = TypeVar("T")


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) dataclass config; tuples become lists."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def from_dict(cls: type[T], data: dict[str, Any], *, where: str = "config") -> T:
    """Build `cls` from a dict, recursing into nested dataclasses; unknown keys are an error."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise VlaforgeError(f"unknown key {where}.{key}{did_you_mean(key, names)}")
        kwargs[key] = _coerce(hints[key], value, f"{where}.{key}")
    return cls(**kwargs)


def apply_overrides(cfg: T, overrides: list[str] | tuple[str, ...]) -> T:
    """Apply `a.b=value` strings to a frozen config; values parse as JSON, else as a bare string."""
    for item in overrides:
        if "=" not in item:
            raise VlaforgeError(f"override {item!r} is not of the form key=value (e.g. trunk.depth=4)")
        key, raw = item.split("=", 1)
        cfg = _replace_path(cfg, key.strip().split("."), _parse(raw.strip()), key.strip())
    return cfg


def _replace_path(cfg: Any, path: list[str], value: Any, full: str) -> Any:
    if not dataclasses.is_dataclass(cfg):
        raise VlaforgeError(f"config key {full!r}: {path[0]!r} is not a section")
    names = [f.name for f in dataclasses.fields(cfg)]
    head = path[0]
    if head not in names:
        raise VlaforgeError(f"unknown config key {full!r}{did_you_mean(head, names)}")
    hint = typing.get_type_hints(type(cfg))[head]
    current = getattr(cfg, head)
    if len(path) > 1:
        new = _replace_path(current, path[1:], value, full)
    else:
        new = _coerce(hint, value, full)
    return dataclasses.replace(cfg, **{head: new})


def _parse(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """Turn a JSON value into the declared type; raise a clear error when it cannot fit."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, where)
            except VlaforgeError as err:
                errors.append(str(err))
        raise VlaforgeError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise VlaforgeError(
                f"{where}: {value!r} is not one of {list(args)}{did_you_mean(str(value), map(str, args))}"
            )
        return value
    if origin in (tuple, list):
        if isinstance(value, str):  # a,b or [a, b] with unquoted items (not JSON)
            inner = value.strip()
            inner = inner[1:-1] if inner.startswith("[") and inner.endswith("]") else inner
            value = [v.strip().strip("'\"") for v in inner.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise VlaforgeError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        return (
            tuple(_coerce(item, v, where) for v in value)
            if origin is tuple
            else [_coerce(item, v, where) for v in value]
        )
    if origin is dict or hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        if dataclasses.is_dataclass(value):
            return value
        if not isinstance(value, dict):
            raise VlaforgeError(f"{where}: expected a section, got {value!r}")
        return from_dict(hint, value, where=where)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise VlaforgeError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise VlaforgeError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise VlaforgeError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        return str(value)
    return value
