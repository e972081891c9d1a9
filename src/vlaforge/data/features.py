"""Feature specs for the writer (constructors, validation), frames and episode metadata; numpy <-> arrow."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from vlaforge.data import layout
from vlaforge.errors import VlaforgeError

RESERVED_COLUMNS = {"episode_index", "tasks", "length", "dataset_from_index", "dataset_to_index", "task"}


def video_feature(size: int) -> dict[str, Any]:
    """The LeRobot spec of a square RGB camera stream stored as video."""
    return {"dtype": "video", "shape": [size, size, 3], "names": ["height", "width", "channels"]}


def vector_feature(dim: int, names: list[str] | None = None, dtype: str = "float32") -> dict[str, Any]:
    """The LeRobot spec of a per-frame vector (state, action, reward, flags)."""
    return {"dtype": dtype, "shape": [dim], "names": names}


def user_features(features: dict[str, dict]) -> dict[str, dict]:
    out = {}
    for key, ft in features.items():
        if key not in layout.DEFAULT_FEATURES:
            out[key] = {"dtype": ft["dtype"], "shape": list(ft["shape"]), "names": ft.get("names")}
    return out


def check_features(features: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Normalise and validate a features dict (JSON-ready: lists, no tuples)."""
    if not features:
        raise VlaforgeError("a dataset needs at least one feature")
    out = {}
    for key, ft in features.items():
        if "/" in key or key in layout.DEFAULT_FEATURES:
            raise VlaforgeError(
                f"feature name {key!r} is not allowed (no '/', not one of {list(layout.DEFAULT_FEATURES)})"
            )
        dtype, shape = ft.get("dtype"), [int(s) for s in ft.get("shape", [])]
        if dtype == "video":
            if len(shape) != 3 or shape[2] != 3:
                raise VlaforgeError(f"video feature {key!r} needs shape [H, W, 3], got {shape}")
            names = ft.get("names") or ["height", "width", "channels"]
        elif dtype in layout.NUMERIC_DTYPES:
            if len(shape) != 1 or shape[0] < 1:
                raise VlaforgeError(f"numeric feature {key!r} needs a 1-d shape [D], got {shape}")
            names = ft.get("names")
        else:
            raise VlaforgeError(
                f"feature {key!r} has dtype {dtype!r}; use one of {['video', *layout.NUMERIC_DTYPES]}"
            )
        out[key] = {"dtype": dtype, "shape": shape, "names": json.loads(json.dumps(names))}
    return out


def check_array(key: str, value: np.ndarray, ft: dict[str, Any]) -> np.ndarray:
    value = np.asarray(value)
    shape = ft["shape"]
    if ft["dtype"] == "video":
        if value.dtype != np.uint8 or list(value.shape[1:]) != shape:
            raise VlaforgeError(
                f"add_episode: {key!r} must be uint8 [T, {', '.join(map(str, shape))}], got {value.dtype} {list(value.shape)}"
            )
        return value
    if shape == [1] and value.ndim == 1:
        value = value[:, None]
    if value.ndim != 2 or list(value.shape[1:]) != shape:
        raise VlaforgeError(f"add_episode: {key!r} must have shape [T, {shape[0]}], got {list(value.shape)}")
    if not np.all(np.isfinite(value.astype(np.float64))):
        raise VlaforgeError(f"add_episode: {key!r} contains NaN or inf")
    return value.astype(ft["dtype"])


def check_metadata(metadata: dict) -> dict:
    for key, value in metadata.items():
        if not isinstance(key, str) or "/" in key or key in RESERVED_COLUMNS:
            raise VlaforgeError(
                f"episode metadata key {key!r} is not allowed (no '/', not one of {sorted(RESERVED_COLUMNS)})"
            )
        if not (value is None or isinstance(value, (bool, int, float, str))):
            raise VlaforgeError(
                f"episode metadata {key!r} must be a number, string or bool, got {type(value).__name__}"
            )
    return json.loads(json.dumps(metadata))


def to_table(columns: dict[str, np.ndarray], features: dict[str, dict]) -> pa.Table:
    arrays = {}
    for key, values in columns.items():
        typ = layout.arrow_type(features[key])
        flat = pa.array(np.ascontiguousarray(values).reshape(-1))
        arrays[key] = (
            flat
            if not pa.types.is_fixed_size_list(typ)
            else pa.FixedSizeListArray.from_arrays(flat, typ.list_size)
        )
    return pa.table(arrays)


def numpy_column(table: pa.Table, key: str) -> np.ndarray:
    column = table.column(key).combine_chunks()
    if pa.types.is_fixed_size_list(column.type):
        return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), -1)
    return column.to_numpy(zero_copy_only=False)
