"""Config overrides, dict round trips and the CLI's error contract."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from vlaforge.cli import COMMANDS, main
from vlaforge.config import apply_overrides, from_dict, to_dict
from vlaforge.errors import VlaforgeError, unknown


@dataclass(frozen=True)
class Inner:
    depth: int = 4
    rate: float = 0.1
    kind: Literal["a", "b"] = "a"


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    cameras: tuple[str, ...] = ("corner2",)
    inner: Inner = field(default_factory=Inner)
    frozen: bool = False
    extra: int | None = None


def test_override_nested_and_typed():
    cfg = apply_overrides(Outer(), ["inner.depth=8", "inner.rate=1", "cameras=a,b", "frozen=true", "extra=3"])
    assert cfg.inner.depth == 8 and cfg.inner.rate == 1.0 and isinstance(cfg.inner.rate, float)
    assert cfg.cameras == ("a", "b") and cfg.frozen is True and cfg.extra == 3
    assert Outer().inner.depth == 4  # the original is untouched


@pytest.mark.parametrize("raw", ["a,b", "[a,b]", "[a, b]", '["a","b"]', "['a', 'b']"])
def test_list_overrides_take_shell_friendly_spellings(raw):
    assert apply_overrides(Outer(), [f"cameras={raw}"]).cameras == ("a", "b")


def test_unknown_key_suggests():
    with pytest.raises(VlaforgeError, match="did you mean 'depth'"):
        apply_overrides(Outer(), ["inner.dept=3"])


@pytest.mark.parametrize("item", ["inner.depth=2.5", "inner.kind=c", "frozen=maybe", "nonsense"])
def test_bad_values_rejected(item):
    with pytest.raises(VlaforgeError):
        apply_overrides(Outer(), [item])


def test_dict_round_trip_and_unknown_file_key():
    cfg = apply_overrides(Outer(), ["inner.kind=b", "cameras=x"])
    assert from_dict(Outer, to_dict(cfg)) == cfg
    with pytest.raises(VlaforgeError, match="unknown key config.inner.width"):
        from_dict(Outer, {"inner": {"width": 3}})


def test_unknown_helper_lists_choices():
    err = unknown("preset", "octo-smal", ["octo-small", "oft"])
    assert "did you mean 'octo-small'" in str(err) and "oft" in str(err)


def test_cli_help_lists_every_command(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out
