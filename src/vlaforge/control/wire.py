"""The wire format of openpi-protocol policy servers: msgpack with numpy arrays, as `openpi_client.msgpack_numpy`.

Shared by our server (`vlaforge.serve`) and every client (`vlaforge.control.client`, the eval runner's
remote policies).

Every message is one binary websocket frame holding a msgpack map. A numpy array travels as the map
`{b"__ndarray__": True, b"data": <raw bytes, C order>, b"dtype": <numpy dtype str, e.g. "<f4">,
b"shape": <list of ints>}` and a numpy scalar as `{b"__npgeneric__": True, b"data": <item>, b"dtype":
<str>}`. The marker keys are msgpack *bin* (Python bytes), exactly as openpi writes them, so either side
can be openpi's or ours. Nothing is ever unpickled.

Deviation from openpi (stricter, same wire format): decoding refuses object / void / structured
dtypes and arrays whose byte count does not match dtype x shape, and raises `ProtocolError` naming
the problem instead of crashing or reading past the buffer. It also accepts str marker keys
(`"__ndarray__"`) from non-Python clients.

Limits (`DecodeLimits`, what the server passes for requests): msgpack's own caps on the length of
one array / map / string / bin, a budget of containers per message (every map and array costs one
Python call while decoding: `b"\xdd" + struct.pack(">I", N) + b"\x80" * N` is N empty maps in N + 5
bytes, 16 M of them took 25 s and 1.2 GB before this budget) and a nesting depth. Any of them
exceeded is a `ProtocolError`, as is a message nested deeper than Python's recursion allows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

# dtype kinds a client may send: bool, signed/unsigned int, float. Never object ("O") or void ("V").
_ALLOWED_KINDS = frozenset("biuf")
_ARRAY_KEYS = (b"__ndarray__", "__ndarray__")
_GENERIC_KEYS = (b"__npgeneric__", "__npgeneric__")


class ProtocolError(ValueError):
    """A message that is not valid msgpack-numpy (the text of the error is sent back to the client)."""


@dataclass(frozen=True)
class DecodeLimits:
    """Bounds on one decoded message (see the module doc); the server sizes them per request."""

    max_bin_len: int = 16 * 1024 * 1024
    """Longest bin (an array's raw bytes)."""
    max_str_len: int = 64 * 1024
    """Longest string, in bytes."""
    max_array_len: int = 1024
    """Most elements of one array (list)."""
    max_map_len: int = 256
    """Most entries of one map."""
    max_containers: int = 4096
    """Most maps + arrays in the whole message."""
    max_depth: int = 32
    """Deepest nesting of maps and arrays."""


class _Budget:
    """Counts containers while msgpack decodes (its hooks run once per map and per array)."""

    def __init__(self, limit: int) -> None:
        self.left = limit

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise ProtocolError("message holds too many maps/arrays")


def _pack_default(obj: Any) -> Any:
    """msgpack `default` hook: numpy arrays and scalars in openpi's layout."""
    if isinstance(obj, (np.ndarray, np.generic)) and obj.dtype.kind in ("V", "O", "c"):
        raise ValueError(f"unsupported dtype for the wire: {obj.dtype}")
    if isinstance(obj, np.ndarray):
        arr = np.ascontiguousarray(obj)
        return {b"__ndarray__": True, b"data": arr.tobytes(), b"dtype": arr.dtype.str, b"shape": arr.shape}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(
        f"cannot serialize {type(obj).__name__} (send numpy arrays, numbers, strings, lists, dicts)"
    )


def _field(obj: dict, name: str) -> Any:
    """`obj[b"name"]` or `obj["name"]` (openpi writes bytes keys; other languages may write str)."""
    if name.encode() in obj:
        return obj[name.encode()]
    if name in obj:
        return obj[name]
    raise ProtocolError(f"array record lacks its {name!r} field")


def _dtype(raw: Any) -> np.dtype:
    try:
        dtype = np.dtype(raw.decode() if isinstance(raw, bytes) else raw)
    except (TypeError, ValueError, UnicodeDecodeError) as err:
        raise ProtocolError(f"bad array dtype {raw!r}") from err
    if dtype.kind not in _ALLOWED_KINDS or dtype.fields is not None:
        raise ProtocolError(f"array dtype {dtype} is not allowed (use bool, int, uint or float)")
    return dtype


def _unpack_hook(obj: dict) -> Any:
    """msgpack `object_hook`: rebuild arrays, validating dtype and size before touching the buffer."""
    if any(k in obj for k in _ARRAY_KEYS):
        dtype = _dtype(_field(obj, "dtype"))
        shape = _field(obj, "shape")
        data = _field(obj, "data")
        if not isinstance(shape, (list, tuple)) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ProtocolError(f"bad array shape {shape!r}")
        if not isinstance(data, (bytes, bytearray)):
            raise ProtocolError("array data must be msgpack bin (bytes)")
        if len(data) != math.prod(shape) * dtype.itemsize:
            raise ProtocolError(
                f"array of shape {tuple(shape)} and dtype {dtype} needs "
                f"{math.prod(shape) * dtype.itemsize} bytes, got {len(data)}"
            )
        return np.frombuffer(data, dtype=dtype).reshape(shape)
    if any(k in obj for k in _GENERIC_KEYS):
        return _dtype(_field(obj, "dtype")).type(_field(obj, "data"))
    return obj


def packb(obj: Any) -> bytes:
    """Serialize a message (dicts, lists, numbers, strings, numpy arrays) to msgpack bytes."""
    return msgpack.packb(obj, default=_pack_default, use_bin_type=True)


def unpackb(data: bytes, limits: DecodeLimits | None = None) -> Any:
    """Parse a msgpack-numpy message; any malformed input, or one beyond `limits`, raises
    `ProtocolError` (never pickle). No limits: msgpack's defaults (replies from a trusted server)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError("expected a binary msgpack frame, got a text frame")
    try:
        if limits is None:
            return msgpack.unpackb(bytes(data), object_hook=_unpack_hook, raw=False)
        obj = msgpack.unpackb(bytes(data), raw=False, **_bounded(limits))
    except ProtocolError:
        raise
    except RecursionError as err:
        raise ProtocolError("frame is nested too deeply") from err
    except (ValueError, TypeError, msgpack.UnpackException) as err:
        raise ProtocolError(f"frame is not valid msgpack: {type(err).__name__}: {err}") from err
    check_depth(obj, limits.max_depth)
    return obj


def _bounded(limits: DecodeLimits) -> dict[str, Any]:
    budget = _Budget(limits.max_containers)

    def object_hook(obj: dict) -> Any:
        budget.spend()
        return _unpack_hook(obj)

    def list_hook(obj: list) -> list:
        budget.spend()
        return obj

    return {
        "object_hook": object_hook,
        "list_hook": list_hook,
        "max_bin_len": limits.max_bin_len,
        "max_str_len": limits.max_str_len,
        "max_array_len": limits.max_array_len,
        "max_map_len": limits.max_map_len,
        "max_ext_len": 0,  # no extension types on this wire
    }


def check_depth(obj: Any, max_depth: int) -> None:
    """Raise `ProtocolError` if maps/lists nest deeper than `max_depth` (iterative: no recursion)."""
    stack = [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        if children and depth > max_depth:
            raise ProtocolError(f"message is nested deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in children)


def to_str_keys(obj: Any) -> Any:
    """Decode bytes map keys to str, recursively (openpi-style packers may send bytes keys)."""
    if isinstance(obj, dict):
        return {(k.decode() if isinstance(k, bytes) else k): to_str_keys(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_str_keys(v) for v in obj]
    return obj
