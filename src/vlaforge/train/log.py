"""Reading a run's training log, RUN/log.jsonl (written by `Trainer`: one JSON object per line).

Records with `loss` are training steps (`step`, `loss`, `lr`, `time`, `samples_per_s`, ...); records
with `val_loss` are validation passes. A line cut short by a killed run is skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

from vlaforge.errors import VlaforgeError

LOG_FILE = "log.jsonl"


def read_log(path: str | Path, *, missing_ok: bool = False) -> list[dict]:
    """The records of a log file (or of RUN/log.jsonl when `path` is a run directory), in order."""
    path = Path(path)
    if path.is_dir():
        path = path / LOG_FILE
    if not path.exists():
        if missing_ok:
            return []
        raise VlaforgeError(f"no training log at {path}")
    records = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # the last line of a run killed mid-write
    return records


def train_records(log: list[dict]) -> list[dict]:
    """The training-step records (those with a loss)."""
    return [r for r in log if "loss" in r]


def val_records(log: list[dict]) -> list[dict]:
    """The validation records (those with a val_loss)."""
    return [r for r in log if "val_loss" in r]
