"""Atomic checkpoints: `RUN/checkpoints/step-XXXXXX/` + `last` + `best`, keep the last K and the best.

Each checkpoint directory is exactly what `VLAPolicy.from_pretrained` loads (the policy's own
`save_pretrained` output, EMA weights when EMA is on) plus `training_state/`:

    training_state/state.pt     model (raw, non-EMA) weights, optimizer, scheduler, EMA, RNG states,
                                data-loader position, step, best metric
    training_state/trainer.json step, metrics, time (for humans and `--resume`)

Atomicity: everything is written into `checkpoints/.tmp-step-XXXXXX-<pid>/` and renamed into place
only when complete; `last` / `best` are relative symlinks replaced with `os.replace`. A failure at any
point (disk full, permissions, an exception in a writer) removes the temporary directory and leaves
every earlier checkpoint and both links as they were.
`state.pt` is a pickle written by us for our own runs; never resume from a checkpoint you did not make.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch

STEP_RE = re.compile(r"^step-(\d{6,})$")
STATE_DIR = "training_state"


def step_name(step: int) -> str:
    return f"step-{step:06d}"


def list_steps(ckpt_root: Path) -> list[tuple[int, Path]]:
    """Complete step checkpoints, oldest first (temporary directories are ignored)."""
    if not ckpt_root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_root.iterdir() if (m := STEP_RE.match(p.name)) and p.is_dir()]
    return sorted(found)


def save_checkpoint(
    ckpt_root: Path,
    step: int,
    write_policy: Callable[[Path], None],
    training_state: dict,
    info: dict,
) -> Path:
    """Write step `step` atomically and point `last` at it; returns the final directory."""
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / step_name(step)
    tmp = ckpt_root / f".tmp-{step_name(step)}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        write_policy(tmp)
        (tmp / STATE_DIR).mkdir()
        torch.save(training_state, tmp / STATE_DIR / "state.pt")
        _write_json(tmp / STATE_DIR / "trainer.json", {"step": step, "time": time.time(), **info})
        _fsync_tree(tmp)
        _replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    point_link(ckpt_root, "last", final)
    return final


def point_link(ckpt_root: Path, name: str, target: Path) -> None:
    """Atomically make `ckpt_root/name` a relative symlink to `target` (a copy where links fail)."""
    link = ckpt_root / name
    tmp = ckpt_root / f".tmp-link-{name}-{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    try:
        os.symlink(target.name, tmp, target_is_directory=True)
    except OSError:  # filesystems without symlinks: fall back to a full copy
        shutil.copytree(target, tmp)
        if link.exists() and not link.is_symlink():
            _replace_dir(tmp, link)
            return
    os.replace(tmp, link)


def prune(ckpt_root: Path, keep_last: int) -> None:
    """Delete step checkpoints beyond the newest `keep_last`, never the one `best` or `last` points to."""
    protected = {_resolve(ckpt_root / n) for n in ("best", "last")}
    steps = list_steps(ckpt_root)
    for _, path in steps[: max(0, len(steps) - keep_last)]:
        if path.resolve() not in protected:
            trash = path.with_name(f".trash-{path.name}-{os.getpid()}")
            os.rename(path, trash)
            shutil.rmtree(trash, ignore_errors=True)
    for leftover in ckpt_root.glob(".*-step-*"):  # temporaries of a process killed mid-save
        if leftover.is_dir() and not leftover.name.endswith(f"-{os.getpid()}"):
            shutil.rmtree(leftover, ignore_errors=True)


def load_training_state(ckpt_dir: Path, map_location: str | torch.device = "cpu") -> dict:
    """The `training_state/state.pt` of a checkpoint we wrote."""
    path = Path(ckpt_dir) / STATE_DIR / "state.pt"
    return torch.load(path, map_location=map_location, weights_only=False)


def checkpoint_step(ckpt_dir: Path) -> int | None:
    """The step a checkpoint we wrote was saved at (from training_state/trainer.json), None if unknown."""
    try:
        return int(json.loads((Path(ckpt_dir) / STATE_DIR / "trainer.json").read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def latest_checkpoint(ckpt_root: Path) -> Path | None:
    """`last` if it exists, else the newest complete step directory."""
    last = ckpt_root / "last"
    if last.exists():
        return last.resolve()
    steps = list_steps(ckpt_root)
    return steps[-1][1] if steps else None


def _replace_dir(src: Path, dst: Path) -> None:
    """Rename `src` to `dst`; an existing `dst` (a re-save after resume) is moved away first."""
    if dst.exists():
        old = dst.with_name(f".old-{dst.name}-{os.getpid()}")
        os.rename(dst, old)
        os.rename(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(src, dst)


def _resolve(path: Path) -> Path | None:
    return path.resolve() if path.exists() else None


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, default=float) + "\n")


def _fsync_tree(root: Path) -> None:
    """Flush file contents to disk before the rename makes the checkpoint visible."""
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
