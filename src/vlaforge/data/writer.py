"""Write LeRobot v3.0 datasets, one atomically committed episode at a time, resumable after a kill.

Design (why it survives `kill -9` at any moment):

- `add_episode` writes the episode's mp4s straight to their final place
  (`videos/<key>/chunk-CCC/file-FFF.mp4`, one file per episode, file number = episode index), then
  its numeric rows to `.staging/episode-NNNNNN.parquet`, and last its commit record
  `.staging/episode-NNNNNN.json` (task, length, metadata, stats). Every file goes to a temporary
  name and is renamed into place, so each is whole or absent; the JSON record is the commit point.
  An episode is committed iff its record exists; on `resume=True` anything else (temp files, an
  mp4 or parquet without a record) is deleted and numbering continues after the last record.
- `finalize()` first removes meta/info.json (a dataset without it is incomplete; the reader says so),
  then assembles `data/` parquet files (rolled at ~100 MB like LeRobot), the episodes parquet,
  tasks.parquet and stats.json, writes meta/info.json last, and only then drops `.staging/`.
  A crash inside finalize leaves `.staging/` intact, so resume + finalize finishes the job.
- Resuming a finalized dataset turns it back into staging records (data rows, stats, metadata).

Videos: one mp4 per episode is legal v3.0 (each episode row names its own file; LeRobot rolls files
by size anyway). It keeps every commit a rename, never a rewrite of a shared file, and decoding an
episode never seeks. `from_timestamp` is therefore 0 and `to_timestamp` = length / fps.

Per-episode metadata (e.g. `{"seed": 7}`) becomes extra columns of the episodes parquet; LeRobot
ignores columns it does not know.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vlaforge.data import layout
from vlaforge.data.features import (
    check_array,
    check_features,
    check_metadata,
    numpy_column,
    to_table,
    user_features,
)
from vlaforge.data.stats import Stats, aggregate, from_json, image_stats, numeric_stats, to_json
from vlaforge.data.video import (
    DEFAULT_CODEC,
    DEFAULT_CRF,
    DEFAULT_GOP,
    DEFAULT_PIX_FMT,
    video_info,
    write_mp4,
)
from vlaforge.errors import VlaforgeError

_RECORD = re.compile(r"^episode-(\d{6})\.json$")


class LeRobotWriter:
    """Append episodes to a LeRobot v3.0 dataset at `root`; call `finalize()` when done.

    `features`: `{key: {"dtype": "float32"|"int64"|"bool"|"video", "shape": [...], "names": ...}}`
    (video shape `[H, W, 3]`), without the five default columns (timestamp, frame_index,
    episode_index, index, task_index), which the writer adds. `codec`/`crf`/`pix_fmt`/`gop` choose the mp4
    encoding (defaults and why: `vlaforge.data.video`).
    """

    def __init__(
        self,
        root: str | Path,
        *,
        fps: int,
        robot_type: str | None,
        features: dict[str, dict[str, Any]],
        resume: bool = False,
        overwrite: bool = False,
        codec: str = DEFAULT_CODEC,
        crf: int = DEFAULT_CRF,
        pix_fmt: str = DEFAULT_PIX_FMT,
        gop: int = DEFAULT_GOP,
    ):
        self.root = Path(root)
        self.staging = self.root / layout.STAGING_DIR
        self.config = {"fps": int(fps), "robot_type": robot_type, "features": check_features(features)}
        self.video_options = {"codec": codec, "crf": crf, "pix_fmt": pix_fmt, "gop": gop}
        self._prepare(resume=resume, overwrite=overwrite)
        self._records = self._load_records()

    # ----------------------------------------------------------------- opening
    def _prepare(self, *, resume: bool, overwrite: bool) -> None:
        exists = self.root.exists() and any(self.root.iterdir())
        if exists and overwrite:
            self._remove_existing()
        elif exists and not resume:
            raise VlaforgeError(
                f"dataset {str(self.root)!r} already exists; pass --resume to continue it or --overwrite to replace it"
            )
        for done in self.root.glob(layout.STAGING_DIR + ".done-*"):
            shutil.rmtree(done, ignore_errors=True)
        if exists and resume and not self.staging.is_dir():
            if not (self.root / layout.INFO_PATH).is_file():
                raise VlaforgeError(
                    f"cannot resume {str(self.root)!r}: it is neither a dataset nor a staged collection"
                )
            self._unstage_finalized()
        self.staging.mkdir(parents=True, exist_ok=True)
        config_path = self.staging / "config.json"
        if config_path.is_file():
            self._check_same_config(layout.read_json(config_path, "staging config"))
        else:
            layout.atomic_write_json(config_path, self.config)

    def _remove_existing(self) -> None:
        looks_like_dataset = (self.root / layout.INFO_PATH).exists() or self.staging.exists()
        if not looks_like_dataset:
            raise VlaforgeError(
                f"refusing to overwrite {str(self.root)!r}: it is not empty and does not look like a dataset"
            )
        shutil.rmtree(self.root)

    def _check_same_config(self, old: dict) -> None:
        for key in ("fps", "robot_type", "features"):
            if old.get(key) != self.config[key]:
                raise VlaforgeError(
                    f"cannot resume {str(self.root)!r}: {key} differs from the existing dataset "
                    f"({old.get(key)!r} there, {self.config[key]!r} now); use --overwrite or another --out"
                )

    def _load_records(self) -> list[dict]:
        """Committed episodes 0..n-1; delete temp files and uncommitted leftovers of a crash."""
        indices = sorted(int(m.group(1)) for p in self.staging.iterdir() if (m := _RECORD.match(p.name)))
        n = next((i for i, idx in enumerate(indices) if idx != i), len(indices))
        records = [layout.read_json(self._record_path(i), "episode record") for i in range(n)]
        for path in self.staging.iterdir():
            m = re.match(r"^episode-(\d{6})\.(json|parquet)$", path.name)
            if path.name != "config.json" and (m is None or int(m.group(1)) >= n):
                path.unlink()
        for key in self.video_keys:
            for path in (self.root / "videos" / key).glob("*/*"):
                if path.name.startswith(".") or self._video_episode(path) >= n:
                    path.unlink()
        return records

    @staticmethod
    def _video_episode(path: Path) -> int:
        chunk = re.match(r"^chunk-(\d+)$", path.parent.name)
        file = re.match(r"^file-(\d+)\.mp4$", path.name)
        if not (chunk and file):
            return 1 << 62  # not ours: treated as a leftover
        return int(chunk.group(1)) * layout.CHUNKS_SIZE + int(file.group(1))

    # ----------------------------------------------------------------- public API
    @property
    def video_keys(self) -> list[str]:
        return [k for k, ft in self.config["features"].items() if ft["dtype"] == "video"]

    @property
    def num_episodes(self) -> int:
        return len(self._records)

    def episode_metadata(self) -> list[dict]:
        """One dict per committed episode: episode_index, task, length and the caller's metadata."""
        return [
            {"episode_index": r["episode_index"], "task": r["task"], "length": r["length"], **r["metadata"]}
            for r in self._records
        ]

    def add_episode(self, frames: dict[str, np.ndarray], task: str, metadata: dict | None = None) -> int:
        """Commit one episode atomically; returns its episode_index."""
        frames, length = self._check_frames(frames)
        if not isinstance(task, str) or not task.strip():
            raise VlaforgeError("add_episode: task must be a non-empty instruction string")
        metadata = check_metadata(metadata or {})
        index = self.num_episodes
        stats = {}
        for key in self.video_keys:
            write_mp4(self._video_path(key, index), frames[key], self.config["fps"], **self.video_options)
            stats[key] = image_stats(frames[key])
        numeric = {k: v for k, v in frames.items() if k not in self.video_keys}
        stats.update({k: numeric_stats(v) for k, v in numeric.items()})
        layout.atomic_write_parquet(
            self.staging / f"episode-{index:06d}.parquet", self._rows(numeric, length)
        )
        record = {
            "episode_index": index,
            "task": task,
            "length": length,
            "metadata": metadata,
            "stats": to_json(stats),
        }
        layout.atomic_write_json(self._record_path(index), record)
        self._records.append(record)
        return index

    # ----------------------------------------------------------------- helpers
    def _record_path(self, index: int) -> Path:
        return self.staging / f"episode-{index:06d}.json"

    def _video_path(self, key: str, index: int) -> Path:
        chunk, file = layout.chunk_file(index)
        return self.root / layout.VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file)

    def _check_frames(self, frames: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
        features = self.config["features"]
        missing, extra = sorted(set(features) - set(frames)), sorted(set(frames) - set(features))
        if missing or extra:
            raise VlaforgeError(
                f"add_episode: frames do not match the features (missing {missing}, unexpected {extra})"
            )
        out = {key: check_array(key, frames[key], ft) for key, ft in features.items()}
        lengths = {key: len(v) for key, v in out.items()}
        if len(set(lengths.values())) != 1:
            raise VlaforgeError(f"add_episode: features have different lengths {lengths}")
        length = next(iter(lengths.values()))
        if length < 1:
            raise VlaforgeError("add_episode: an episode needs at least one frame")
        return out, length

    def _rows(self, numeric: dict[str, np.ndarray], length: int) -> pa.Table:
        """Staged rows: the caller's numeric features + timestamp + frame_index (rest at finalize)."""
        columns = dict(numeric)
        columns["timestamp"] = (np.arange(length) / self.config["fps"]).astype(np.float32)
        columns["frame_index"] = np.arange(length, dtype=np.int64)
        return to_table(columns, {**self.config["features"], **layout.DEFAULT_FEATURES})

    # ----------------------------------------------------------------- finalize
    def finalize(self) -> Path:
        """Assemble the v3.0 layout from the committed episodes; meta/info.json is written last."""
        if not self._records:
            raise VlaforgeError(f"dataset {str(self.root)!r} has no episodes to finalize")
        (self.root / layout.INFO_PATH).unlink(missing_ok=True)
        tasks = list(dict.fromkeys(r["task"] for r in self._records))
        table = self._assemble_data(tasks)
        data_files = self._write_data_files(table)
        episode_stats = self._episode_stats(table)
        self._write_episodes(tasks, data_files, episode_stats)
        layout.atomic_write_parquet(self.root / layout.TASKS_PATH, layout.tasks_table(tasks))
        layout.atomic_write_json(
            self.root / layout.STATS_PATH, to_json(self._dataset_stats(table, episode_stats))
        )
        layout.atomic_write_json(self.root / layout.INFO_PATH, self._info(len(tasks), table.num_rows))
        done = self.root / f"{layout.STAGING_DIR}.done-{os.getpid()}"
        os.replace(self.staging, done)
        shutil.rmtree(done, ignore_errors=True)
        return self.root

    def _assemble_data(self, tasks: list[str]) -> pa.Table:
        task_index = {t: i for i, t in enumerate(tasks)}
        parts, start = [], 0
        for r in self._records:
            part = layout.read_parquet(
                self.staging / f"episode-{r['episode_index']:06d}.parquet", "staged episode"
            )
            n = part.num_rows
            part = part.append_column("episode_index", pa.array(np.full(n, r["episode_index"], np.int64)))
            part = part.append_column("index", pa.array(np.arange(start, start + n, dtype=np.int64)))
            part = part.append_column("task_index", pa.array(np.full(n, task_index[r["task"]], np.int64)))
            parts.append(part)
            start += n
        features = {**self.config["features"], **layout.DEFAULT_FEATURES}
        order = [k for k, ft in features.items() if ft["dtype"] != "video"]
        table = pa.concat_tables(parts).select(order)
        return table.replace_schema_metadata(
            {b"huggingface": layout.hf_features_metadata({k: features[k] for k in order})}
        )

    def _write_data_files(self, table: pa.Table) -> list[tuple[int, int]]:
        """Split by episode into files of ~DATA_FILE_SIZE_MB; returns (chunk, file) per episode."""
        per_frame = max(table.nbytes / max(table.num_rows, 1), 1.0)
        limit = layout.DATA_FILE_SIZE_MB * 1024**2 / per_frame
        groups, current, size = [], [], 0
        for r in self._records:
            if current and size + r["length"] > limit:
                groups.append(current)
                current, size = [], 0
            current.append(r)
            size += r["length"]
        groups.append(current)
        assignment, start, written = [], 0, set()
        for n, group in enumerate(groups):
            rows = sum(r["length"] for r in group)
            chunk, file = layout.chunk_file(n)
            path = self.root / layout.DATA_PATH.format(chunk_index=chunk, file_index=file)
            layout.atomic_write_parquet(path, table.slice(start, rows))
            written.add(path)
            assignment += [(chunk, file)] * len(group)
            start += rows
        for stale in (self.root / "data").glob("*/*.parquet"):
            if stale not in written:
                stale.unlink()
        return assignment

    def _episode_stats(self, table: pa.Table) -> list[dict[str, Stats]]:
        """Per-episode stats: the staged ones plus the five default columns (known only now)."""
        out, start = [], 0
        columns = {k: numpy_column(table, k) for k in layout.DEFAULT_FEATURES}
        for r in self._records:
            stats = from_json(r["stats"])
            for key, values in columns.items():
                stats[key] = numeric_stats(values[start : start + r["length"]])
            out.append(stats)
            start += r["length"]
        return out

    def _dataset_stats(self, table: pa.Table, episode_stats: list[dict[str, Stats]]) -> dict[str, Stats]:
        """Exact stats over all frames for numeric features; aggregated episode stats for videos."""
        stats = {}
        for key, ft in {**self.config["features"], **layout.DEFAULT_FEATURES}.items():
            if ft["dtype"] == "video":
                stats[key] = aggregate([s[key] for s in episode_stats])
            else:
                stats[key] = numeric_stats(numpy_column(table, key))
        return stats

    def _write_episodes(
        self, tasks: list[str], data_files: list[tuple[int, int]], episode_stats: list
    ) -> None:
        rows, start, fps = [], 0, self.config["fps"]
        for r, (chunk, file), stats in zip(self._records, data_files, episode_stats, strict=True):
            n, idx = r["length"], r["episode_index"]
            row = {"episode_index": idx, "tasks": [r["task"]], "length": n}
            row.update({"data/chunk_index": chunk, "data/file_index": file})
            row.update({"dataset_from_index": start, "dataset_to_index": start + n})
            for key in self.video_keys:
                v_chunk, v_file = layout.chunk_file(idx)
                row.update({f"videos/{key}/chunk_index": v_chunk, f"videos/{key}/file_index": v_file})
                row.update({f"videos/{key}/from_timestamp": 0.0, f"videos/{key}/to_timestamp": n / fps})
            for feature, s in to_json(stats).items():
                row.update({f"stats/{feature}/{k}": v for k, v in s.items()})
            row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
            rows.append({**row, **r["metadata"]})
            start += n
        for stale in (self.root / layout.EPISODES_DIR).glob("*/*.parquet"):
            stale.unlink()
        path = self.root / layout.EPISODES_PATH.format(chunk_index=0, file_index=0)
        layout.atomic_write_parquet(path, pa.Table.from_pylist(_fill_missing(rows)))

    def _info(self, num_tasks: int, num_frames: int) -> dict[str, Any]:
        features = json.loads(json.dumps(self.config["features"]))
        for key in self.video_keys:
            features[key]["info"] = video_info(self._video_path(key, 0))
        return {
            "codebase_version": layout.CODEBASE_VERSION,
            "robot_type": self.config["robot_type"],
            "total_episodes": self.num_episodes,
            "total_frames": num_frames,
            "total_tasks": num_tasks,
            "chunks_size": layout.CHUNKS_SIZE,
            "data_files_size_in_mb": layout.DATA_FILE_SIZE_MB,
            "video_files_size_in_mb": layout.VIDEO_FILE_SIZE_MB,
            "fps": self.config["fps"],
            "splits": {"train": f"0:{self.num_episodes}"},
            "data_path": layout.DATA_PATH,
            "video_path": layout.VIDEO_PATH if self.video_keys else None,
            "features": {**features, **json.loads(json.dumps(layout.DEFAULT_FEATURES))},
        }

    # ----------------------------------------------------------------- resume a finalized dataset
    def _unstage_finalized(self) -> None:
        """Turn a finalized dataset (ours) back into staging records so that episodes can be added."""
        from vlaforge.data.reader import LeRobotV3Dataset

        ds = LeRobotV3Dataset(self.root)
        self._check_same_config(
            {"fps": ds.fps, "robot_type": ds.info.get("robot_type"), "features": user_features(ds.features)}
        )
        keep = [k for k in ds._table.column_names if k not in ("episode_index", "index", "task_index")]
        tmp = self.root / f"{layout.STAGING_DIR}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        layout.atomic_write_json(tmp / "config.json", self.config)
        known = {
            "tasks",
            "length",
            "data/chunk_index",
            "data/file_index",
            "dataset_from_index",
            "dataset_to_index",
        }
        for ep, stats in zip(ds.episodes, ds.episode_stats, strict=True):
            i = ep["episode_index"]
            for key in self.video_keys:
                if ep[f"videos/{key}/from_timestamp"] != 0.0 or ds.video_path(i, key) != self._video_path(
                    key, i
                ):
                    raise VlaforgeError(
                        f"cannot resume {str(self.root)!r}: its videos were not written by vlaforge"
                    )
            rows = ds._table.slice(ep["dataset_from_index"], ep["length"]).select(keep)
            pq.write_table(rows.replace_schema_metadata(None), tmp / f"episode-{i:06d}.parquet")
            meta = {k: v for k, v in ep.items() if k not in known and "/" not in k and k != "episode_index"}
            user_stats = {k: v for k, v in stats.items() if k not in layout.DEFAULT_FEATURES}
            record = {
                "episode_index": i,
                "task": ep["tasks"][0],
                "length": ep["length"],
                "metadata": meta,
                "stats": to_json(user_stats),
            }
            layout.atomic_write_json(tmp / f"episode-{i:06d}.json", record)
        os.replace(tmp, self.staging)


def _fill_missing(rows: list[dict]) -> list[dict]:
    """Give every row every column (metadata keys may differ per episode; missing -> null)."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    return [{k: row.get(k) for k in keys} for row in rows]
