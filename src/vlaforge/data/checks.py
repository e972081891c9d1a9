"""What the reader checks before anyone trains on a dataset (each failure is a one-line `VlaforgeError`).

A dataset whose metadata disagrees with its data used to train "fine" on garbage: an `fps` of 10
for 30 fps videos put two of every three decoded frames on the same slot and left the rest of the
frame cache black. The checks here run when `LeRobotV3Dataset` opens a dataset (cheap, no video is
opened); `video.read_mp4_ranges` checks each file's own frame rate and counts distinct decoded
frames when the frame cache is built.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vlaforge.errors import VlaforgeError

VIDEO_DTYPES = ("video", "image")


def corrupt(root: Path, message: str) -> VlaforgeError:
    return VlaforgeError(f"corrupt dataset {str(root)!r}: {message}")


def check_fps(root: Path, info: dict[str, Any]) -> int:
    """`fps` in meta/info.json is a positive integer and agrees with every video feature's `video.fps`."""
    value = info["fps"]
    integral = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not integral or value <= 0 or value != int(value):
        raise corrupt(root, f"meta/info.json fps must be a positive integer, got {value!r}")
    fps = int(value)
    for key, ft in info["features"].items():
        recorded = (ft.get("info") or {}).get("video.fps") if ft.get("dtype") in VIDEO_DTYPES else None
        if isinstance(recorded, (int, float)) and not math.isclose(recorded, fps, rel_tol=0.01):
            raise corrupt(
                root, f"meta/info.json says fps {fps} but its feature {key!r} records video.fps {recorded}"
            )
    return fps


def feature_width(column: pa.ChunkedArray) -> int | None:
    """Values per row of a numeric column (1 for a scalar); None when the rows differ in length."""
    kind = column.type
    if pa.types.is_fixed_size_list(kind):
        return kind.list_size
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        lengths = pc.unique(pc.list_value_length(column)).to_pylist()
        return lengths[0] if len(lengths) == 1 else None
    return 1


def check_shapes(root: Path, table: pa.Table, features: dict[str, dict[str, Any]]) -> None:
    """Each numeric feature's `shape` in meta/info.json matches what the data parquet holds."""
    for key, ft in features.items():
        if ft["dtype"] in VIDEO_DTYPES or not table.num_rows:
            continue
        expected = int(np.prod(ft["shape"]))
        width = feature_width(table.column(key))
        if width != expected:
            held = "rows of different lengths" if width is None else f"{width} values per frame"
            raise corrupt(
                root, f"meta/info.json gives {key!r} shape {list(ft['shape'])} but the data holds {held}"
            )


def check_index(root: Path, index: np.ndarray) -> None:
    """`index` (sorted) is 0..N-1: no duplicates, no gaps."""
    duplicates = np.unique(index[1:][np.diff(index) == 0])
    if len(duplicates):
        shown = ", ".join(str(int(i)) for i in duplicates[:5]) + (" ..." if len(duplicates) > 5 else "")
        raise corrupt(root, f"duplicate `index` values in the data parquet ({len(duplicates)}: {shown})")
    if len(index) and (index[0] != 0 or index[-1] != len(index) - 1):
        raise corrupt(
            root, f"`index` runs {int(index[0])}..{int(index[-1])} over {len(index)} frames, not 0..N-1"
        )


def check_task_index(root: Path, task_index: np.ndarray, num_tasks: int) -> None:
    """Every frame's `task_index` names a row of meta/tasks.parquet."""
    bad = (task_index < 0) | (task_index >= num_tasks)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise corrupt(
            root,
            f"task_index {int(task_index[rows[0]])} at index {int(rows[0])} ({len(rows)} frames) is out of "
            f"range: meta/tasks.parquet has {num_tasks} tasks (0..{num_tasks - 1})",
        )


def check_episode_rows(root: Path, episode_index: np.ndarray, episodes: list[dict]) -> None:
    """Each episode's `dataset_from_index..dataset_to_index` holds exactly its frames."""
    for ep in episodes:
        start, end = ep["dataset_from_index"], ep["dataset_to_index"]
        rows = episode_index[start:end]
        if end - start != ep["length"] or len(rows) != ep["length"] or np.any(rows != ep["episode_index"]):
            raise corrupt(
                root,
                f"episode {ep['episode_index']} claims frames {start}..{end} (length {ep['length']}) "
                "but the data's episode_index disagrees",
            )
