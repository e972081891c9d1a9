"""LeRobot v3.0 on-disk layout: paths, default features, arrow types, atomic writes.

    meta/info.json                                  codebase_version "v3.0", fps, features, totals, paths
    meta/stats.json                                 {feature: {min, max, mean, std, count, q01..q99}}
    meta/tasks.parquet                              pandas frame: index = task string, column task_index
    meta/episodes/chunk-000/file-000.parquet        one row per episode (see `writer.py`)
    data/chunk-{c:03d}/file-{f:03d}.parquet         frames of many episodes
    videos/{video_key}/chunk-{c:03d}/file-{f:03d}.mp4

Field names follow LeRobot 0.4.x (`src/lerobot/datasets/utils.py`, `lerobot_dataset.py`) and the
fixture that LeRobot 0.4.4 wrote (`/work/shared/fixtures/lerobot-v3.0-tiny`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from vlaforge.errors import VlaforgeError

CODEBASE_VERSION = "v3.0"
INFO_PATH = "meta/info.json"
#: vlaforge's collection record beside LeRobot's files (simulator, control mode, camera roles, config).
COLLECT_PATH = "meta/vlaforge_collect.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
CHUNK_FILE = "chunk-{chunk_index:03d}/file-{file_index:03d}"
EPISODES_PATH = EPISODES_DIR + "/" + CHUNK_FILE + ".parquet"
DATA_PATH = "data/" + CHUNK_FILE + ".parquet"
VIDEO_PATH = "videos/{video_key}/" + CHUNK_FILE + ".mp4"
CHUNKS_SIZE = 1000  # files per chunk directory (LeRobot's DEFAULT_CHUNK_SIZE)
DATA_FILE_SIZE_MB = 100
VIDEO_FILE_SIZE_MB = 200
STAGING_DIR = ".staging"  # our per-episode commits before finalize(); LeRobot never looks here
CACHE_DIR = ".vlaforge_cache"

DEFAULT_FEATURES: dict[str, dict[str, Any]] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
NUMERIC_DTYPES = ("float32", "float64", "int64", "int32", "bool")
INCOMPLETE_HINT = "was collection interrupted? rerun collect to resume"


def chunk_file(n: int) -> tuple[int, int]:
    """The n-th file of a sequence -> (chunk_index, file_index), CHUNKS_SIZE files per chunk."""
    return n // CHUNKS_SIZE, n % CHUNKS_SIZE


def arrow_type(feature: dict[str, Any]) -> pa.DataType:
    """Arrow column type LeRobot writes: a scalar for shape [1], a fixed-size list for [D]."""
    value = pa.from_numpy_dtype(feature["dtype"]) if feature["dtype"] != "bool" else pa.bool_()
    shape = list(feature["shape"])
    return value if shape == [1] else pa.list_(value, shape[0])


def hf_features_metadata(features: dict[str, dict[str, Any]]) -> bytes:
    """The `huggingface` schema metadata that `datasets` (and so LeRobot) writes next to the data."""
    out = {}
    for key, ft in features.items():
        value = {"dtype": ft["dtype"], "_type": "Value"}
        out[key] = (
            value
            if list(ft["shape"]) == [1]
            else {"feature": value, "length": ft["shape"][0], "_type": "List"}
        )
    return json.dumps({"info": {"features": out}}).encode()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary sibling, fsync, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=4, ensure_ascii=False) + "\n").encode())


def atomic_write_parquet(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp, compression="snappy")
    os.replace(tmp, path)


def check_output_dir(path: str | Path, flag: str = "--out") -> Path:
    """Refuse, before any work, an output that is an existing file or a directory that cannot be made
    or written (`--out /proc/x`, a read-only disk). Leaves nothing behind: directories it had to
    create for the probe are removed again."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise VlaforgeError(f"{flag} {path}: is a file, not a directory")
    missing, probe = [], path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    if not probe.is_dir():
        raise VlaforgeError(f"{flag} {path}: {probe} is a file, not a directory")
    test = path / f".vlaforge-write-test-{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        test.touch()
        test.unlink()
    except OSError as exc:
        raise VlaforgeError(f"{flag} {path}: cannot write there ({exc.strerror or exc})") from exc
    finally:
        for made in missing:  # deepest first
            try:
                made.rmdir()
            except OSError:
                break
    return path


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise VlaforgeError(f"corrupt dataset: cannot read {what} {str(path)!r}: {exc}") from exc


def read_parquet(path: Path, what: str) -> pa.Table:
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise VlaforgeError(f"corrupt dataset: cannot read {what} {str(path)!r}: {exc}") from exc


def tasks_table(tasks: list[str]) -> pa.Table:
    """meta/tasks.parquet exactly as `pandas.DataFrame({"task_index": ...}, index=tasks).to_parquet()`."""
    pandas_meta = {
        "index_columns": ["__index_level_0__"],
        "column_indexes": [
            {
                "name": None,
                "field_name": None,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": {"encoding": "UTF-8"},
            }
        ],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {
                "name": None,
                "field_name": "__index_level_0__",
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "attributes": {},
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    schema = pa.schema(
        [("task_index", pa.int64()), ("__index_level_0__", pa.string())],
        metadata={b"pandas": json.dumps(pandas_meta).encode()},
    )
    return pa.table({"task_index": list(range(len(tasks))), "__index_level_0__": tasks}, schema=schema)
