"""Command-line options generated from a frozen config dataclass (the one place argparse is used).

One `--kebab-name` option per field: the default and the help text come from the field (its default
and its docstring, `vlaforge.config.field_docs`); `Literal[...]` fields list their choices, `bool`
fields get `--x/--no-x`, tuples and lists take comma lists (or one item per repetition where the
field says `option(repeat=True)`), a field without a default is required, and a field marked
positional is an optional positional argument. Nested sections are reached with `--set a.b=c`
unless the field exposes some of their fields as options of their own (`option(expose=...)`).

Argparse only collects the strings; `vlaforge.config.parse_text` turns each into the field's type
once, so a bad value is a one-line `VlaforgeError` naming the option.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import MISSING, dataclass
from typing import Any

from vlaforge.config import apply_overrides, field_docs, parse_text
from vlaforge.errors import VlaforgeError

SET_DEST = "_set"


class Parser(argparse.ArgumentParser):
    """Argparse whose usage errors are `VlaforgeError`s: one line, exit status 2."""

    def error(self, message: str) -> typing.NoReturn:
        raise VlaforgeError(f"{message} (see `{self.prog} --help`)")


@dataclass(frozen=True)
class Opt:
    """One generated option: where its value goes in the config and how to read it."""

    dest: str
    path: tuple[str, ...]
    hint: Any
    flag: str
    repeat: bool = False
    boolean: bool = False


def kebab(name: str) -> str:
    return name.replace("_", "-")


def _default(f: dataclasses.Field, section: Any = None) -> Any:
    if section is not None:
        return getattr(section, f.name)
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def _shown(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value)) or "none"
    return "none" if value is None else str(value)


def _is_bool(hint: Any) -> bool:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return hint is bool or (typing.get_origin(hint) in (typing.Union, _UnionType) and args == [bool])


_UnionType = type(int | None)


def _choices(hint: Any) -> list[str] | None:
    for h in (hint, *typing.get_args(hint)):
        if typing.get_origin(h) is typing.Literal:
            return [str(a) for a in typing.get_args(h)]
    return None


def _metavar(hint: Any, name: str) -> str:
    """N for integers, X for numbers, A,B for lists, else the field's name."""
    inner = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    base = inner[0] if typing.get_origin(hint) in (typing.Union, _UnionType) else hint
    if base is int:
        return "N"
    if base is float:
        return "X"
    if typing.get_origin(base) in (tuple, list):
        return "A,B"
    return name.upper()


def add_options(parser: argparse.ArgumentParser, cls: type, positional: tuple[str, ...] = ()) -> list[Opt]:
    """Add one option per field of `cls` (and `--set`); returns what `build_config` needs."""
    opts = _add_fields(parser, cls, (), None, positional)
    parser.add_argument(
        "--set",
        dest=SET_DEST,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set any config field, dotted into nested sections (e.g. --set a.b=c); repeatable, "
        "applied after the options above",
    )
    return opts


def _add_fields(parser, cls, prefix, section, positional, only=None, flags=None) -> list[Opt]:
    hints, docs, opts = typing.get_type_hints(cls), field_docs(cls), []
    for f in dataclasses.fields(cls):
        meta, hint = f.metadata, hints[f.name]
        if meta.get("hidden") or meta.get("overrides") or (only is not None and f.name not in only):
            continue
        default = _default(f, section)
        if dataclasses.is_dataclass(hint):
            expose = meta.get("expose") or ()
            if expose:
                names = None if expose is True else tuple(expose)
                renamed = dict(meta.get("flags") or {})
                opts += _add_fields(parser, hint, (*prefix, f.name), default, (), names, renamed)
            continue
        flag = (flags or {}).get(f.name)
        opts.append(
            _add_one(parser, f, hint, docs.get(f.name, ""), default, (*prefix, f.name), positional, flag)
        )
    return opts


def _add_one(parser, f, hint, doc, default, path, positional, renamed=None) -> Opt:
    meta, dest = f.metadata, "opt:" + ".".join(path)
    flag = "--" + (renamed or meta.get("flag") or kebab(f.name))
    aliases = [*meta.get("aliases", ()), *([kebab(f.name)] if renamed else [])]
    names = [flag, *("--" + a.lstrip("-") for a in aliases)]
    doc = doc.replace("%", "%%")
    choices = _choices(hint)
    shown = "" if default is MISSING else f" (default: {_shown(default)})".replace("%", "%%")
    metavar = meta.get("metavar") or ("{" + ",".join(choices) + "}" if choices else _metavar(hint, f.name))
    if f.name in positional or meta.get("positional"):
        parser.add_argument(dest, nargs="?", default=argparse.SUPPRESS, metavar=metavar, help=doc + shown)
        return Opt(dest, path, hint, f.name.upper())
    if _is_bool(hint):
        parser.add_argument(
            *names,
            dest=dest,
            action=argparse.BooleanOptionalAction,
            default=argparse.SUPPRESS,
            help=doc + shown,
        )
        return Opt(dest, path, hint, flag, boolean=True)
    repeat = bool(meta.get("repeat"))
    parser.add_argument(
        *names,
        dest=dest,
        default=argparse.SUPPRESS,
        action="append" if repeat else "store",
        metavar=metavar,
        required=default is MISSING,
        help=doc + (" (repeatable)" if repeat else "") + shown,
    )
    return Opt(dest, path, hint, flag, repeat=repeat)


def build_config(cls: type, opts: list[Opt], args: argparse.Namespace) -> Any:
    """The config: field defaults, then the options given, then `--set` items (which win)."""
    given = vars(args)
    top: dict[str, Any] = {}
    sections: dict[tuple[str, ...], dict[str, Any]] = {}
    for opt in opts:
        if opt.dest not in given:
            continue
        value = _value(opt, given[opt.dest])
        if len(opt.path) == 1:
            top[opt.path[0]] = value
        else:
            sections.setdefault(opt.path[:-1], {})[opt.path[-1]] = value
    cfg = cls(**top)
    for path, values in sections.items():
        cfg = apply_overrides(cfg, [{".".join((*path, k)): v for k, v in values.items()}])
    return apply_overrides(cfg, list(given.get(SET_DEST) or []))


def _value(opt: Opt, raw: Any) -> Any:
    if opt.boolean:
        return bool(raw)
    if opt.repeat:
        (item,) = typing.get_args(opt.hint)[:1] or (str,)
        if item is Ellipsis:
            item = str
        items = [parse_text(item, text, opt.flag) for text in raw]
        return tuple(items) if typing.get_origin(opt.hint) is tuple else items
    return parse_text(opt.hint, raw, opt.flag)
