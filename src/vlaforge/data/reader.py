"""Read LeRobot v3.0 datasets: ours and those LeRobot itself wrote.

`LeRobotV3Dataset(root)` loads meta/info.json, tasks, episodes and the frame table (numeric
features) into memory; videos are decoded on request (`episode_frames`, `decode_video_into`), never
in a training loop: `vlaforge.data.frame_cache` decodes them once into a memory-mapped cache.

A directory without meta/info.json but with our staging area or data is an incomplete dataset (a
collection that was interrupted before `finalize()`); the error says so. Metadata that disagrees with
the data (fps, shapes, `index`, `task_index`, episode ranges) is refused (`vlaforge.data.checks`); a
missing meta/stats.json (or a numeric feature missing from it) is recomputed from the data with a
warning on stderr, since every frame is at hand and the numeric statistics are exact and cheap.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from vlaforge.data import checks, layout
from vlaforge.data.layout import INCOMPLETE_HINT
from vlaforge.data.stats import Stats, aggregate, from_json, numeric_stats
from vlaforge.data.video import read_mp4_ranges
from vlaforge.errors import VlaforgeError
from vlaforge.keys import IMAGE_PREFIX


class LeRobotV3Dataset:
    """A LeRobot v3.0 dataset on local disk.

    Attributes: `fps`, `features`, `info`, `stats` (feature -> stat -> numpy array), `num_episodes`,
    `num_frames`, `camera_keys` (video/image feature keys), `tasks` (list[str] by task_index),
    `episodes` (one dict per episode: `episode_index`, `tasks`, `length`, `dataset_from_index`,
    `dataset_to_index`, video file columns and any extra per-episode metadata such as `seed`; the
    per-episode `stats/...` columns are in `episode_stats`).
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.info = _load_info(self.root)
        self.fps = checks.check_fps(self.root, self.info)
        self.features: dict[str, dict[str, Any]] = self.info["features"]
        self.camera_keys = [k for k, ft in self.features.items() if ft["dtype"] in ("video", "image")]
        if any(self.features[k]["dtype"] == "image" for k in self.camera_keys):
            raise VlaforgeError(
                f"dataset {str(self.root)!r} stores images as PNG ('image' dtype); only 'video' is supported"
            )
        self.tasks = _load_tasks(self.root)
        self.episodes, self.episode_stats = _load_episodes(self.root)
        self._table = _load_data(self.root, self.info)
        self.num_episodes = len(self.episodes)
        self.num_frames = self._table.num_rows
        self._check_consistency()
        self.stats: dict[str, Stats] = self._load_stats()

    def _check_consistency(self) -> None:
        info = self.info
        if self.num_episodes != info["total_episodes"] or self.num_frames != info["total_frames"]:
            raise VlaforgeError(
                f"corrupt dataset {str(self.root)!r}: meta/info.json promises {info['total_episodes']} episodes / "
                f"{info['total_frames']} frames, found {self.num_episodes} / {self.num_frames}"
            )
        for i, ep in enumerate(self.episodes):
            if ep["episode_index"] != i:
                raise VlaforgeError(
                    f"corrupt dataset {str(self.root)!r}: episode rows are not 0..N-1 (row {i})"
                )
        checks.check_task_index(self.root, self.column("task_index")[:, 0], len(self.tasks))
        checks.check_episode_rows(self.root, self.column("episode_index")[:, 0], self.episodes)

    def _load_stats(self) -> dict[str, Stats]:
        """meta/stats.json; what it lacks is recomputed (numeric features exactly from the frames,
        videos from the per-episode stats when every episode has them) with one warning."""
        path = self.root / layout.STATS_PATH
        stats = from_json(layout.read_json(path, "meta/stats.json")) if path.is_file() else {}
        missing = [
            k for k, ft in self.features.items() if k not in stats and ft["dtype"] not in checks.VIDEO_DTYPES
        ]
        for key in missing:
            stats[key] = numeric_stats(self.column(key))
        for key in self.camera_keys:
            per_episode = [s.get(key) for s in self.episode_stats]
            if key not in stats and per_episode and all(s and "count" in s for s in per_episode):
                stats[key] = aggregate(per_episode)
                missing.append(key)
        if missing:
            what = "is missing" if not path.is_file() else f"lacks {missing}"
            _warn_once(f"dataset {str(self.root)!r}: meta/stats.json {what}; recomputed from the data")
        return stats

    def column(self, key: str) -> np.ndarray:
        """All frames of a numeric feature, in `index` order: `[N, *shape]` (shape [1] gives `[N, 1]`)."""
        if key not in self._table.column_names:
            raise VlaforgeError(f"dataset {str(self.root)!r} has no numeric feature {key!r}")
        column = self._table.column(key).combine_chunks()
        if pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type):
            return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), -1)
        return column.to_numpy(zero_copy_only=False).reshape(len(column), 1)

    @property
    def collection(self) -> dict[str, Any]:
        """vlaforge's collection record (`meta/vlaforge_collect.json`), {} for other datasets."""
        path = self.root / layout.COLLECT_PATH
        return layout.read_json(path, layout.COLLECT_PATH) if path.is_file() else {}

    def video_path(self, episode_index: int, video_key: str) -> Path:
        ep = self.episodes[episode_index]
        return self.root / self.info["video_path"].format(
            video_key=video_key,
            chunk_index=ep[f"videos/{video_key}/chunk_index"],
            file_index=ep[f"videos/{video_key}/file_index"],
        )

    def _check_camera(self, video_key: str) -> None:
        if video_key not in self.camera_keys:
            cameras = ", ".join(self.camera_keys) or "none"
            raise VlaforgeError(f"dataset {str(self.root)!r} has no video {video_key!r} (videos: {cameras})")

    def episode_frames(self, episode_index: int, video_key: str) -> np.ndarray:
        """Decoded frames of one episode: uint8 `[length, H, W, 3]` at the stored size."""
        self._check_camera(video_key)
        ep = self.episodes[episode_index]
        start = ep[f"videos/{video_key}/from_timestamp"]
        path = self.video_path(episode_index, video_key)
        return read_mp4_ranges(path, [(start, ep["length"])], self.fps)[0]

    def decode_video_into(self, video_key: str, out: np.ndarray) -> None:
        """Decode every episode of `video_key` into `out[index]` (`[num_frames, H, W, 3]`), each file once."""
        self._check_camera(video_key)
        by_file: dict[Path, list[dict]] = defaultdict(list)
        for ep in self.episodes:
            by_file[self.video_path(ep["episode_index"], video_key)].append(ep)
        for path, eps in by_file.items():
            ranges = [(ep[f"videos/{video_key}/from_timestamp"], ep["length"]) for ep in eps]
            views = [out[ep["dataset_from_index"] : ep["dataset_to_index"]] for ep in eps]
            read_mp4_ranges(path, ranges, self.fps, out=views)

    @property
    def video_shape(self) -> dict[str, tuple[int, int, int]]:
        """Stored `(H, W, C)` per camera key."""
        return {k: tuple(self.features[k]["shape"]) for k in self.camera_keys}

    def __repr__(self) -> str:
        return (
            f"LeRobotV3Dataset({str(self.root)!r}, episodes={self.num_episodes}, frames={self.num_frames}, "
            f"fps={self.fps}, cameras={[k.removeprefix(IMAGE_PREFIX) for k in self.camera_keys]})"
        )


def _load_info(root: Path) -> dict[str, Any]:
    if root.exists() and not root.is_dir():
        raise VlaforgeError(f"{str(root)!r} is a file, not a dataset directory")
    if not root.is_dir():
        raise VlaforgeError(f"dataset {str(root)!r} does not exist")
    path = root / layout.INFO_PATH
    if not path.is_file():
        if any((root / name).exists() for name in (layout.STAGING_DIR, "data", "videos")):
            raise VlaforgeError(
                f"incomplete dataset {str(root)!r}: meta/info.json is missing ({INCOMPLETE_HINT})"
            )
        raise VlaforgeError(f"{str(root)!r} is not a LeRobot dataset (no meta/info.json)")
    info = layout.read_json(path, "meta/info.json")
    version = info.get("codebase_version") if isinstance(info, dict) else None
    if version != layout.CODEBASE_VERSION:
        raise VlaforgeError(
            f"dataset {str(root)!r} has codebase_version {version!r}; only LeRobot {layout.CODEBASE_VERSION} is supported"
        )
    for key in ("fps", "features", "total_episodes", "total_frames", "data_path"):
        if key not in info:
            raise VlaforgeError(f"corrupt dataset {str(root)!r}: meta/info.json lacks {key!r}")
    return info


def _load_tasks(root: Path) -> list[str]:
    table = layout.read_parquet(root / layout.TASKS_PATH, "meta/tasks.parquet")
    names = [c for c in table.column_names if c != "task_index"]
    if "task_index" not in table.column_names or not names:
        raise VlaforgeError(
            f"corrupt dataset {str(root)!r}: meta/tasks.parquet lacks task_index or the task column"
        )
    task_col = "task" if "task" in names else names[0]
    pairs = sorted(
        zip(table.column("task_index").to_pylist(), table.column(task_col).to_pylist(), strict=True)
    )
    if [i for i, _ in pairs] != list(range(len(pairs))):
        raise VlaforgeError(f"corrupt dataset {str(root)!r}: task_index in meta/tasks.parquet is not 0..N-1")
    return [t for _, t in pairs]


def _parquet_files(root: Path, sub: str, what: str) -> list[Path]:
    files = sorted((root / sub).glob("*/*.parquet"))
    if not files:
        raise VlaforgeError(
            f"corrupt dataset {str(root)!r}: no {what} parquet under {sub}/ ({INCOMPLETE_HINT})"
        )
    return files


def _load_episodes(root: Path) -> tuple[list[dict], list[dict[str, Stats]]]:
    tables = [
        layout.read_parquet(p, "episodes") for p in _parquet_files(root, layout.EPISODES_DIR, "episodes")
    ]
    rows = pa.concat_tables(tables, promote_options="default").to_pylist()
    rows.sort(key=lambda r: r["episode_index"])
    episodes, stats = [], []
    for row in rows:
        episodes.append({k: v for k, v in row.items() if not k.startswith("stats/")})
        nested: dict[str, dict[str, list]] = defaultdict(dict)
        for k, v in row.items():
            if k.startswith("stats/") and v is not None:
                feature, stat = k[len("stats/") :].rsplit("/", 1)
                nested[feature][stat] = v
        stats.append(from_json(nested))
    return episodes, stats


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    """One line on stderr, once per process (the trainer opens a dataset several times)."""
    if message not in _WARNED:
        _WARNED.add(message)
        print(f"vlaforge: warning: {message}", file=sys.stderr)


def _load_data(root: Path, info: dict) -> pa.Table:
    tables = [layout.read_parquet(p, "data") for p in _parquet_files(root, "data", "data")]
    try:
        table = pa.concat_tables(tables)
    except pa.ArrowInvalid as exc:
        raise VlaforgeError(f"corrupt dataset {str(root)!r}: data files disagree: {exc}") from exc
    missing = [
        k
        for k, ft in info["features"].items()
        if ft["dtype"] not in ("video", "image") and k not in table.column_names
    ]
    if missing:
        raise VlaforgeError(f"corrupt dataset {str(root)!r}: data parquet lacks {missing}")
    checks.check_shapes(root, table, info["features"])
    index = table.column("index").to_numpy()
    if len(index) and np.any(np.diff(index) < 0):
        order = np.argsort(index, kind="stable")
        table, index = table.take(order), index[order]
    checks.check_index(root, index)
    return table
