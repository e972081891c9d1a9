"""Collect Meta-World scripted-expert demonstrations into a LeRobot v3.0 dataset, resumably.

Order and determinism. Attempt `a` of task `t` always uses the env seed `episode_seed(seed, t, a)`.
Worker processes run attempts in parallel (each renders in its own process), but episodes are
committed in one fixed order: task by task (in `--tasks` order), attempts ascending, keeping the
successful ones until the task has `episodes_per_task`. The dataset is therefore a function of the
options alone, whatever the number of workers or the timing.

Resume. The writer commits each episode atomically and keeps its metadata (`seed`, `attempt`,
`metaworld_task`, `success_step`). Because commits follow the fixed order, the committed episodes
of an interrupted run are a prefix of that order: a rerun with the same options restarts each
task after its last committed attempt (failed attempts after it are simply re-run: the simulator
and the expert are deterministic) and finishes the same dataset. The options of a collection are
kept in `meta/vlaforge_collect.json`, which also records, once done, each task's expert success
rate and seeds; a rerun with other options is refused, as is a finished dataset without overwrite.

Expert success rate = successes / attempts consumed until the task had its episodes (attempts
beyond the `max_attempts` cap are never run; a task that hits it gets fewer episodes and a warning).
"""

from __future__ import annotations

import json
import os
import sys
import time
import zlib
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from vlaforge.data import layout
from vlaforge.data.lerobot_v3 import LeRobotWriter
from vlaforge.envs.metaworld import FPS, MAX_STEPS, Rollout, RolloutSpec, run_spec, worker_init
from vlaforge.envs.tasks import TASK_DESCRIPTIONS
from vlaforge.errors import VlaforgeError
from vlaforge.keys import ACTION, ENV_STATE, REWARD, STATE, SUCCESS, image_key

SIDECAR = "meta/vlaforge_collect.json"
ROBOT_TYPE = "sawyer"


@dataclass(frozen=True)
class CollectConfig:
    """What to collect; everything that decides the dataset's content (workers do not)."""

    tasks: tuple[str, ...]  # canonical v3 task names, in dataset order (see envs.tasks.resolve_tasks)
    episodes_per_task: int = 10  # successful episodes kept per task
    cameras: tuple[str, ...] = ("corner2",)  # rendered cameras (envs.render orients them upright)
    image_size: int = 128  # square image side, pixels
    seed: int = 0  # base seed; episode seeds derive from (seed, task, attempt)
    steps_after_success: int = 10  # frames kept after the first success (not the idle tail)
    max_attempts: int = 5  # cap on attempts per task, as a multiple of episodes_per_task
    max_steps: int = MAX_STEPS  # an attempt that has not succeeded by then fails


def episode_seed(base: int, task: str, attempt: int) -> int:
    """The env seed of attempt `attempt` of `task` (31-bit, stable across runs and platforms)."""
    state = np.random.SeedSequence([base, zlib.crc32(task.encode()), attempt]).generate_state(1)
    return int(state[0] >> 1)


def dataset_features(cfg: CollectConfig) -> dict[str, dict[str, Any]]:
    """The LeRobot features of a collection (the writer adds the five index columns)."""
    from vlaforge.data.features import vector_feature, video_feature

    features = {image_key(cam): video_feature(cfg.image_size) for cam in cfg.cameras}
    features[STATE] = vector_feature(4, ["x", "y", "z", "gripper"])
    features[ENV_STATE] = vector_feature(39)
    features[ACTION] = vector_feature(4, ["dx", "dy", "dz", "gripper"])
    features[REWARD] = vector_feature(1)
    features[SUCCESS] = vector_feature(1, dtype="bool")
    return features


@dataclass
class TaskProgress:
    """Commit state of one task: attempts below `cursor` are consumed, in order."""

    task: str
    cap: int  # attempts allowed
    committed: int = 0  # episodes in the dataset
    cursor: int = 0  # next attempt to commit or discard
    next_attempt: int = 0  # next attempt to dispatch
    in_flight: int = 0
    seeds: list[int] = field(default_factory=list)
    results: dict[int, Rollout] = field(default_factory=dict)  # finished, not yet consumed

    def finished(self, target: int) -> bool:
        return self.committed >= target or self.cursor >= self.cap

    def wants_more(self, target: int) -> bool:
        """Whether to dispatch another attempt (in-flight ones are counted as future successes)."""
        hoped = self.committed + self.in_flight + sum(r.success for r in self.results.values())
        return hoped < target and self.next_attempt < self.cap


@dataclass
class CollectSummary:
    root: Path
    episodes: int
    frames: int  # in the whole dataset
    seconds: float  # this run
    per_task: dict[str, dict[str, Any]]  # task -> episodes, attempts, success_rate, seeds
    new_frames: int = 0  # written by this run (a resumed run counts only its own)

    def short_tasks(self, target: int) -> list[str]:
        return [t for t, s in self.per_task.items() if s["episodes"] < target]


# ------------------------------------------------------------------------------------- output checks
def check_output(root: Path, cfg: CollectConfig, overwrite: bool) -> bool:
    """Decide how to open `root`: True = resume an unfinished collection with the same options.

    Raises `VlaforgeError` for a finished dataset (without overwrite), for an unfinished collection
    made with other options, and for a non-empty directory that is not a dataset.
    """
    if root.exists() and not root.is_dir():
        raise VlaforgeError(f"output {str(root)!r} is a file, not a directory")
    if not root.exists() or not any(root.iterdir()):
        return False
    if overwrite:
        return False  # the writer replaces datasets and refuses anything that is not one
    side = root / SIDECAR
    if not side.is_file() and _staged_but_empty(root):
        return True  # killed right after the writer opened it: nothing committed, nothing to check
    if not side.is_file():
        what = "a dataset" if (root / layout.INFO_PATH).is_file() else "files"
        raise VlaforgeError(
            f"output directory {str(root)!r} already exists and holds {what}; pass --overwrite to replace it or choose another --out"
        )
    saved = layout.read_json(side, "collection settings")
    if saved.get("complete"):
        raise VlaforgeError(
            f"output directory {str(root)!r} already holds a finished dataset; pass --overwrite to replace it or choose another --out"
        )
    if saved.get("config") != _jsonable(asdict(cfg)):
        diff = _differences(saved.get("config") or {}, _jsonable(asdict(cfg)))
        raise VlaforgeError(
            f"{str(root)!r} holds an unfinished collection made with other options ({diff}); rerun it with the same options to resume, or pass --overwrite"
        )
    return True


def _staged_but_empty(root: Path) -> bool:
    staging = root / layout.STAGING_DIR
    others = [p for p in root.iterdir() if p.name not in (layout.STAGING_DIR, "meta", "videos")]
    finished = (root / layout.INFO_PATH).exists()
    return staging.is_dir() and not others and not finished and not any(staging.glob("episode-*.json"))


def _differences(old: dict, new: dict) -> str:
    keys = [k for k in new if old.get(k) != new[k]]
    return "; ".join(f"{k}: {old.get(k)!r} there, {new[k]!r} now" for k in keys) or "unknown"


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _write_sidecar(root: Path, cfg: CollectConfig, complete: bool, per_task: dict | None = None) -> None:
    data = {"source": "metaworld", "complete": complete, "config": _jsonable(asdict(cfg))}
    if per_task is not None:
        data["expert_success_rate"] = {t: s["success_rate"] for t, s in per_task.items()}
        data["tasks"] = per_task
    layout.atomic_write_json(root / SIDECAR, data)


# ------------------------------------------------------------------------------------- state
def restore_progress(cfg: CollectConfig, committed: list[dict]) -> list[TaskProgress]:
    """Per-task progress from the writer's committed episode metadata (empty for a new dataset)."""
    cap = cfg.max_attempts * cfg.episodes_per_task
    progress = {t: TaskProgress(t, cap) for t in cfg.tasks}
    for ep in committed:
        task, attempt = ep.get("metaworld_task"), ep.get("attempt")
        if task not in progress or attempt is None or ep.get("seed") != episode_seed(cfg.seed, task, attempt):
            raise VlaforgeError(
                f"cannot resume: committed episode {ep.get('episode_index')} does not belong to this collection; pass --overwrite"
            )
        p = progress[task]
        p.committed += 1
        p.seeds.append(int(ep["seed"]))
        p.cursor = p.next_attempt = max(p.cursor, int(attempt) + 1)
    return list(progress.values())


def _spec(cfg: CollectConfig, task: str, attempt: int) -> RolloutSpec:
    return RolloutSpec(
        task=task,
        seed=episode_seed(cfg.seed, task, attempt),
        cameras=cfg.cameras,
        image_size=cfg.image_size,
        steps_after_success=cfg.steps_after_success,
        max_steps=cfg.max_steps,
    )


class _InlineExecutor(Executor):
    """Runs each job at submit time in this process (`workers=0`: debugging, tests)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:  # noqa: ANN001
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as err:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(err)
        return future


def _executor(workers: int) -> Executor:
    if workers <= 0:
        return _InlineExecutor()
    ctx = get_context("spawn")
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=worker_init, initargs=(os.getpid(),)
    )


# ------------------------------------------------------------------------------------- the loop
class _Collector:
    """Dispatches attempts to workers and commits their results in the fixed order."""

    def __init__(self, cfg: CollectConfig, writer: LeRobotWriter, progress: list[TaskProgress], bar: Any):
        self.cfg, self.writer, self.progress, self.bar = cfg, writer, progress, bar
        self.pending: dict[Future, tuple[TaskProgress, int]] = {}
        self.head = 0  # index of the first unfinished task
        self.frames = 0  # frames committed in this run
        self.window = 1

    def run(self, executor: Executor, window: int) -> None:
        self.window = window
        self._commit()
        while self.head < len(self.progress):
            self._dispatch(executor)
            done, _ = wait(list(self.pending), return_when=FIRST_COMPLETED)
            for future in done:
                p, attempt = self.pending.pop(future)
                p.in_flight -= 1
                rollout = future.result()
                if not p.finished(self.cfg.episodes_per_task):  # else: a late, unneeded attempt
                    p.results[attempt] = rollout
            self._commit()
        for future in self.pending:
            future.cancel()

    def _buffered(self) -> int:
        return len(self.pending) + sum(len(p.results) for p in self.progress)

    def _dispatch(self, executor: Executor) -> None:
        """Fill the window; the head task may always use it (it alone can unblock commits)."""
        target = self.cfg.episodes_per_task
        for i, p in enumerate(self.progress[self.head :]):
            limit_used = (p.in_flight + len(p.results)) if i == 0 else self._buffered()
            while p.wants_more(target) and limit_used < self.window:
                future = executor.submit(run_spec, _spec(self.cfg, p.task, p.next_attempt))
                self.pending[future] = (p, p.next_attempt)
                p.next_attempt += 1
                p.in_flight += 1
                limit_used += 1

    def _commit(self) -> None:
        target = self.cfg.episodes_per_task
        while self.head < len(self.progress):
            p = self.progress[self.head]
            if p.finished(target):
                p.results.clear()
                self._finish_task(p)
                self.head += 1
                continue
            if p.cursor not in p.results:
                return
            rollout = p.results.pop(p.cursor)
            p.cursor += 1
            if rollout.success:
                self._add(p, rollout)

    def _add(self, p: TaskProgress, rollout: Rollout) -> None:
        spec = rollout.spec
        meta = {
            "seed": spec.seed,
            "attempt": p.cursor - 1,
            "metaworld_task": p.task,
            "success_step": rollout.success_step,
        }
        self.writer.add_episode(rollout.frames, TASK_DESCRIPTIONS[p.task], metadata=meta)
        p.committed += 1
        p.seeds.append(spec.seed)
        self.frames += len(rollout.frames[ACTION])
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(
                f"{self.frames / max(self.bar.format_dict['elapsed'], 1e-9):.0f} frames/s, {p.task}"
            )

    def _finish_task(self, p: TaskProgress) -> None:
        if self.bar is None:
            print(f"vlaforge: {p.task}: {p.committed} episodes ({p.cursor} attempts)", file=sys.stderr)
        if p.committed < self.cfg.episodes_per_task:
            print(
                f"vlaforge: warning: {p.task}: only {p.committed}/{self.cfg.episodes_per_task} successful episodes "
                f"after {p.cursor} attempts (the cap); raise --max-attempts to try more seeds",
                file=sys.stderr,
            )


def summarize(progress: list[TaskProgress]) -> dict[str, dict[str, Any]]:
    return {
        p.task: {
            "episodes": p.committed,
            "attempts": p.cursor,
            "success_rate": round(p.committed / p.cursor, 4) if p.cursor else None,
            "seeds": p.seeds,
        }
        for p in progress
    }


def collect(
    cfg: CollectConfig,
    out: str | Path,
    *,
    workers: int = 1,
    overwrite: bool = False,
    progress_bar: bool | None = None,
) -> CollectSummary:
    """Collect (or resume collecting) `cfg` into `out`; returns per-task figures.

    `workers`: processes that simulate and render (0 = this process). `progress_bar`: None shows a
    tqdm bar when stderr is a terminal.
    """
    root = Path(out)
    resume = check_output(root, cfg, overwrite)
    writer = LeRobotWriter(
        root,
        fps=FPS,
        robot_type=ROBOT_TYPE,
        features=dataset_features(cfg),
        resume=resume,
        overwrite=overwrite,
    )
    _write_sidecar(root, cfg, complete=False)
    progress = restore_progress(cfg, writer.episode_metadata())
    start = time.perf_counter()
    bar = _bar(cfg, writer.num_episodes, progress_bar)
    collector = _Collector(cfg, writer, progress, bar)
    executor = _executor(workers)
    try:
        collector.run(executor, window=max(2, 2 * workers))
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        if bar is not None:
            bar.close()
    per_task = summarize(progress)
    if writer.num_episodes == 0:
        raise VlaforgeError("the expert succeeded in no attempt; nothing to write")
    writer.finalize()
    _write_sidecar(root, cfg, complete=True, per_task=per_task)
    frames = sum(ep["length"] for ep in writer.episode_metadata())
    seconds = time.perf_counter() - start
    return CollectSummary(root, writer.num_episodes, frames, seconds, per_task, new_frames=collector.frames)


def _bar(cfg: CollectConfig, initial: int, enabled: bool | None) -> Any:
    if enabled is False or (enabled is None and not sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    total = cfg.episodes_per_task * len(cfg.tasks)
    return tqdm(total=total, initial=initial, unit="ep", desc="collect", dynamic_ncols=True, file=sys.stderr)
