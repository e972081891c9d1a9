"""Action tokenizers: normalized chunks [B, H, A] <-> sequences of integer action tokens.

| kind   | module  | tokens per chunk                 | fitted on data          | anchor          |
| ------ | ------- | -------------------------------- | ----------------------- | --------------- |
| `fast` | fast.py | variable (DCT + BPE compression) | yes (`vlaforge tokenizer fit`) | pi0-FAST |
| `bins` | bins.py | exactly H x A (256 uniform bins) | no                      | RT-2, OpenVLA   |

Every tokenizer receives chunks already normalized by the policy (q01/q99 bounds -> [-1, 1]) and
returns them normalized. `decode` never raises: a sequence of the wrong length, an unknown id or an
invalid character is repaired (see each module) and reported in `Decoded.failed`.
A tokenizer is saved as JSON (`to_dict` / `tokenizer_from_dict`, no pickle); a checkpoint carries
it in its metadata.json under `TOKENIZER_KEY`.
"""

from __future__ import annotations

import json
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vlaforge.errors import VlaforgeError, unknown

TOKENIZER_KEY = "action_tokenizer"
"""metadata.json key of a checkpoint's fitted action tokenizer (its `to_dict()`)."""


@dataclass
class Decoded:
    """`decode`'s answer: actions [B, H, A] (normalized, finite) and, per row, whether it was repaired."""

    actions: torch.Tensor
    failed: list[bool]

    @property
    def failures(self) -> int:
        return sum(self.failed)


class ActionTokenizer(ABC):
    """Base of the action tokenizers (see the module docstring)."""

    kind: str = ""
    fitted: bool = True  # False: a stand-in until the real one is fitted (FastTokenizer.unfitted)

    def __init__(self, horizon: int, action_dim: int) -> None:
        self.horizon, self.action_dim = horizon, action_dim

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Token ids are in [0, vocab_size)."""

    @abstractmethod
    def encode(self, chunks: torch.Tensor) -> list[list[int]]:
        """Normalized chunks [B, H, A] -> one token list per chunk."""

    @abstractmethod
    def decode(self, sequences: Sequence[Sequence[int]]) -> Decoded:
        """Token lists -> `Decoded` (never raises)."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form; `tokenizer_from_dict` rebuilds it."""

    def check_shape(self, horizon: int, action_dim: int) -> None:
        """A VlaforgeError when this tokenizer was fitted for other chunks than the policy's."""
        if (self.horizon, self.action_dim) != (horizon, action_dim):
            raise VlaforgeError(
                f"the {self.kind} action tokenizer was fitted on chunks of {self.horizon} x {self.action_dim} "
                f"but the policy predicts {horizon} x {action_dim} (refit it with `vlaforge tokenizer fit`)"
            )

    def __getstate__(self) -> dict[str, Any]:  # deepcopy (EMA) and pickling go through the JSON form
        return self.to_dict()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(tokenizer_from_dict(state).__dict__)


def tokenizer_from_dict(data: dict[str, Any], where: str = "action tokenizer") -> ActionTokenizer:
    """Rebuild a tokenizer from `to_dict()` output; malformed data is a VlaforgeError naming `where`."""
    from vlaforge.models.tokenizers.bins import BinTokenizer
    from vlaforge.models.tokenizers.fast import FastTokenizer

    kinds = {"fast": FastTokenizer, "bins": BinTokenizer}
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in kinds:
        raise unknown(f"{where}: tokenizer kind", str(kind), tuple(kinds))
    try:
        return kinds[kind].from_dict(data)
    except Exception as err:
        if isinstance(err, VlaforgeError):
            raise
        raise VlaforgeError(f"{where}: malformed {kind} tokenizer ({type(err).__name__}: {err})") from err


def save_tokenizer(tokenizer: ActionTokenizer, path: str | os.PathLike) -> Path:
    """Write the tokenizer's JSON to `path` atomically (nothing half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(tokenizer.to_dict(), f)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 is not meant for a shared artefact
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def load_tokenizer(path: str | os.PathLike) -> ActionTokenizer:
    """Read a tokenizer JSON file written by `save_tokenizer` / `vlaforge tokenizer fit`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise VlaforgeError(f"action tokenizer {path}: no such file") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise VlaforgeError(f"action tokenizer {path}: not valid JSON ({err})") from err
    return tokenizer_from_dict(data, where=str(path))


__all__ = [
    "TOKENIZER_KEY",
    "ActionTokenizer",
    "Decoded",
    "load_tokenizer",
    "save_tokenizer",
    "tokenizer_from_dict",
]
