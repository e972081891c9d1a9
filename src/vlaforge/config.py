"""Typed, frozen dataclass configs: overrides from the command line, dict round trips, field docs.

Configs are frozen dataclasses, possibly nested. `apply_overrides(cfg, ["trunk.depth=4"])` returns a
new config with the dotted fields replaced, the string parsed to the field's declared type; an unknown
key raises `VlaforgeError` with a "did you mean" hint. An item may also be a `{"a.b": value}` dict
whose value is already typed (nothing goes through a string). `to_dict` / `from_dict` give the JSON
form used in `config.json` next to checkpoints (unknown keys in a file are an error, never silently
dropped).

Every field is documented where it is declared: a string literal right after it (or, failing that, a
`# comment` on its line or just above). `field_docs(cls)` reads them back; the command line uses them
as help text. `option(...)` is the field metadata that shapes a field's command-line option.
`parse_text(hint, text)` turns one command-line string into the declared type.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import json
import textwrap
import types
import typing
from pathlib import Path
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


Override = str | dict[str, Any]
"""`"a.b=text"` (the text parsed as JSON, else a bare string) or `{"a.b": typed_value}`."""


def apply_overrides(cfg: T, overrides: list[Override] | tuple[Override, ...]) -> T:
    """Apply `a.b=value` strings (or `{"a.b": value}` dicts) to a frozen config.

    A field declared with `option(overrides=True)` (a tuple of strings) collects the overrides for a
    section that is built later (e.g. `model.head.kind=flow` before the preset is known): the rest of
    the key and the text are appended to it as `head.kind=flow`.
    """
    for item in overrides:
        for key, value, text in _items(item):
            cfg = _replace_path(cfg, key.split("."), value, key, text)
    return cfg


def _items(item: Override) -> list[tuple[str, Any, str | None]]:
    """(key, value, original text or None) for one override."""
    if isinstance(item, dict):
        return [(str(k).strip(), v, None) for k, v in item.items()]
    if not isinstance(item, str) or "=" not in item:
        raise VlaforgeError(f"override {item!r} is not of the form key=value (e.g. trunk.depth=4)")
    key, raw = item.split("=", 1)
    return [(key.strip(), _parse(raw.strip()), raw.strip())]


def _replace_path(cfg: Any, path: list[str], value: Any, full: str, text: str | None = None) -> Any:
    if not dataclasses.is_dataclass(cfg):
        raise VlaforgeError(f"config key {full!r}: {path[0]!r} is not a section")
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    head = path[0]
    if head not in fields:
        raise VlaforgeError(
            f"unknown config key {full!r}{did_you_mean(head, fields) or _in_section(cfg, head)}"
        )
    hint = typing.get_type_hints(type(cfg))[head]
    current = getattr(cfg, head)
    if fields[head].metadata.get("overrides") and len(path) > 1:
        rest = ".".join(path[1:])
        shown = text if text is not None else json.dumps(value)
        new = (*current, f"{rest}={shown}")
    elif len(path) > 1:
        new = _replace_path(current, path[1:], value, full, text)
    else:
        new = _coerce(hint, value, full)
    return dataclasses.replace(cfg, **{head: new})


def _in_section(cfg: Any, name: str) -> str:
    """' (did you mean 'train.lr'?)' when a nested section has the field `name`."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value) and name in {g.name for g in dataclasses.fields(value)}:
            return f" (did you mean '{f.name}.{name}'?)"
    return ""


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
        if type(None) in args and (value is None or str(value).strip().lower() in _NONE_WORDS):
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
    if hint is Path:
        if not isinstance(value, (str, Path)):
            raise VlaforgeError(f"{where}: expected a path, got {value!r}")
        return Path(value)
    return value


# -- command-line text -------------------------------------------------------------------------------
_NONE_WORDS = ("none", "null")


def parse_text(hint: Any, text: str, where: str) -> Any:
    """One command-line string as the declared type: `int`, `float`, `bool`, `Literal`, `Path`,
    optional (`none` -> None), tuples/lists (comma-separated items, each parsed as the item type)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if type(None) in args and text.strip().lower() in _NONE_WORDS:
            return None
        errors = []
        for arg in inner:
            try:
                return parse_text(arg, text, where)
            except VlaforgeError as err:
                errors.append(str(err))
        raise VlaforgeError(errors[0] if errors else f"{where}: bad value {text!r}")
    if origin in (tuple, list):
        raw = text.strip()
        raw = raw[1:-1] if raw.startswith("[") and raw.endswith("]") else raw
        items = [v.strip().strip("'\"") for v in raw.split(",") if v.strip()]
        item = args[0] if args else str
        return _coerce(hint, [parse_text(item, v, where) for v in items], where)
    if hint is int:
        try:
            return int(text)
        except ValueError:
            raise VlaforgeError(f"{where}: expected an integer, got {text!r}") from None
    if hint is float:
        try:
            return float(text)
        except ValueError:
            raise VlaforgeError(f"{where}: expected a number, got {text!r}") from None
    if origin is typing.Literal:
        by_text = {str(a): a for a in args}
        folded = [a for a in by_text if a.lower() == text.lower()]
        text = folded[0] if text not in by_text and len(folded) == 1 else text  # --log-level debug
        if text not in by_text:
            choices = list(by_text)
            raise VlaforgeError(f"{where}: {text!r} is not one of {choices}{did_you_mean(text, choices)}")
        return by_text[text]
    if hint in (str, Any):
        return text
    return _coerce(hint, text, where)


# -- field documentation and command-line metadata ---------------------------------------------------
def option(
    *,
    positional: bool = False,
    repeat: bool = False,
    flag: str | None = None,
    aliases: tuple[str, ...] = (),
    metavar: str | None = None,
    expose: tuple[str, ...] | bool = (),
    flags: dict[str, str] | None = None,
    overrides: bool = False,
    hidden: bool = False,
) -> dict[str, Any]:
    """Metadata for `dataclasses.field(metadata=option(...))`: how the field shows on the command line.

    positional: an optional positional argument (`vlaforge bench latency`); repeat: a list given by
    repeating the option (`--data A --data B`), one item each; flag: the option's name when it is not
    the kebab-cased field name (`--from` for a field `source`); aliases: further names; expose: for a
    nested section, which of its fields become options of their own (True: all), reached with
    `--set section.field=...` otherwise; flags: option names for exposed fields whose kebab-cased
    name is not the usual one (`{"idle_timeout_s": "idle-timeout"}`; the kebab name stays an
    alias); overrides: a tuple of `key=value` strings collected by
    `--set <field>.key=value` for a section built later; hidden: no option (only `--set`).
    """
    meta = {"positional": positional, "repeat": repeat, "flag": flag, "aliases": tuple(aliases)}
    meta |= {"metavar": metavar, "expose": expose, "flags": dict(flags or {}), "overrides": overrides}
    meta["hidden"] = hidden
    return meta


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """`{field name: its documentation}`: the string literal after the field, else its `# comment`."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    body = ast.parse(source).body[0].body
    docs: dict[str, str] = {}
    for i, node in enumerate(body):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        after = body[i + 1] if i + 1 < len(body) else None
        literal = after.value if isinstance(after, ast.Expr) else None
        if isinstance(literal, ast.Constant) and isinstance(literal.value, str):
            docs[node.target.id] = " ".join(inspect.cleandoc(literal.value).split())
            continue
        comment = _comment(lines, node.lineno - 1, node.end_lineno - 1)
        if comment:
            docs[node.target.id] = comment
    for base in cls.__mro__[1:]:
        if dataclasses.is_dataclass(base):
            docs = {**field_docs(base), **docs}
    return docs


def _comment(lines: list[str], first: int, last: int) -> str:
    """A trailing `# comment` on the field's last line, else the comment lines right above it."""
    tail = lines[last].split("#", 1)
    if len(tail) == 2 and tail[0].count('"') % 2 == 0 and tail[0].count("'") % 2 == 0:
        return tail[1].strip()
    above = []
    for line in reversed(lines[:first]):
        if not line.strip().startswith("#"):
            break
        above.insert(0, line.strip().lstrip("#").strip())
    return " ".join(above)


def to_argv(cfg: Any, positional: tuple[str, ...] = ()) -> list[str]:
    """The command-line options that rebuild `cfg` (the inverse of the generated options): a field
    that differs from its default becomes its option (or `--set` for a section it does not expose),
    required and positional fields always appear. For printing a reproducible command line."""
    head: list[str] = []
    argv: list[str] = []
    for f in dataclasses.fields(cfg):
        meta, value = f.metadata, getattr(cfg, f.name)
        default = _field_default(f)
        if f.name in positional or meta.get("positional"):
            head.append(_text(value))
        elif meta.get("overrides"):
            argv += [a for item in value for a in ("--set", f"{f.name}.{item}")]
        elif dataclasses.is_dataclass(value):
            argv += _section_argv(value, default, f.name, meta)
        elif value != default or default is dataclasses.MISSING:
            argv += _option_argv("--" + (meta.get("flag") or f.name.replace("_", "-")), value, meta)
    return head + argv


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _section_argv(value: Any, default: Any, prefix: str, meta: Any) -> list[str]:
    expose, flags, argv = meta.get("expose") or (), meta.get("flags") or {}, []
    for f in dataclasses.fields(value):
        mine, was = getattr(value, f.name), getattr(default, f.name)
        if dataclasses.is_dataclass(mine):
            argv += _section_argv(mine, was, f"{prefix}.{f.name}", {})
        elif mine != was and (expose is True or f.name in expose):
            argv += _option_argv("--" + flags.get(f.name, f.name.replace("_", "-")), mine, f.metadata)
        elif mine != was:
            argv += ["--set", f"{prefix}.{f.name}={_text(mine)}"]
    return argv


def _option_argv(flag: str, value: Any, meta: Any) -> list[str]:
    if isinstance(value, bool):
        return [flag if value else "--no-" + flag[2:]]
    if meta.get("repeat"):
        return [a for item in value for a in (flag, _text(item))]
    return [flag, _text(value)]


def _text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return str(value)


def vlaforge_home() -> Path:
    """Where vlaforge keeps what it makes for a user across runs: `$VLAFORGE_HOME`, else
    `$XDG_CACHE_HOME/vlaforge`, else `~/.cache/vlaforge`. `pretrained/<name>/` holds the checkpoints
    `vlaforge pretrain` publishes (what `finetune --from <name>` and `eval --policy <name>` find)."""
    import os

    if os.environ.get("VLAFORGE_HOME"):
        return Path(os.environ["VLAFORGE_HOME"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(cache).expanduser() / "vlaforge"


def pretrained_dir(name: str) -> Path:
    """The published checkpoint directory of pretrained policy `name` (it may not exist yet)."""
    return vlaforge_home() / "pretrained" / name


def key_value_pairs(spec: str, field: str, form: str) -> list[tuple[str, str]]:
    """ "a=b, c=d" -> [("a", "b"), ("c", "d")]: the comma-separated KEY=VALUE options (`camera_map`,
    `task_weights`, `key_map`), split at the first "=", blanks skipped; an entry without a key or a
    value is refused as "`field` entry '...' must be `form`"."""
    out = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        key, sep, value = (x.strip() for x in item.partition("="))
        if not sep or not key or not value:
            raise VlaforgeError(f"{field} entry {item!r} must be {form}")
        out.append((key, value))
    return out
