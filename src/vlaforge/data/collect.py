"""Collect scripted-expert demonstrations of a registered simulator into a LeRobot v3.0 dataset, resumably.

    run(CollectConfig(tasks="reach,drawer-open-v3", out="D", episodes_per_task=3, image_size=64))

`CollectConfig` is the `vlaforge collect` command's one config (the CLI generates its options);
`resolve` validates it against the simulator's spec (tasks, cameras, bounds); `collect(cfg)` runs it
and `run(cfg)` also prints the report. Environments and the expert come from the simulator registry
(`vlaforge.envs.registry`), attempts run in `vlaforge.envs.rollout.run_attempt`.

Order and determinism. Attempt `a` of task `t` always uses the env seed `episode_seed(seed, t, a)`.
Worker processes run attempts in parallel (each renders in its own process), but episodes are
committed in one fixed order: task by task (in `--tasks` order), attempts ascending, keeping the
successful ones until the task has `episodes_per_task`. The dataset is therefore a function of the
options alone, whatever the number of workers or the timing.

Resume. The writer commits each episode atomically and keeps its metadata (`seed`, `attempt`,
`<simulator>_task` (`metaworld_task`), `success_step`). Because commits follow the fixed order, the committed episodes
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
from vlaforge.envs.registry import SimulatorSpec, get_simulator
from vlaforge.envs.rollout import AttemptSpec, Rollout, run_attempt, worker_init
from vlaforge.errors import VlaforgeError
from vlaforge.keys import ACTION, ENV_STATE, REWARD, STATE, SUCCESS, image_key

SIDECAR = "meta/vlaforge_collect.json"
MAX_IMAGE_SIZE = 1024
MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class CollectConfig:
    """The `vlaforge collect` command: what to collect, where, and how many processes do it."""

    tasks: str
    """Task names and/or suites of the simulator, comma-separated (Meta-World: names with or without
    -v3, mt10, mt50, easy, medium, hard, very_hard, ml45-train, ml45-test)."""
    out: str
    """Output dataset directory (rerunning the same command resumes an interrupted collection)."""
    simulator: str = "metaworld"
    """The registered simulator whose scripted expert demonstrates (vlaforge.envs.registry); one
    defined outside vlaforge as "package.module:name"."""
    episodes_per_task: int = 10
    """Successful episodes kept per task."""
    cameras: str = ""
    """Cameras to render, comma-separated (default: the simulator's default camera; upright)."""
    robots: str = ""
    """Robots, comma-separated, for simulators with a choice of arm (robosuite: Panda, UR5e,
    Kinova3, IIWA, Sawyer): each task runs on each of them (default: on every arm)."""
    protocol: str = ""
    """How each episode's scene is placed, for simulators with a choice (Meta-World: heldout = a
    fresh placement per seed, the default; published = the benchmark's 50 fixed placements per task,
    as LeRobot's metaworld_mt50 data; see docs/meta-world-protocols.md)."""
    image_size: int = 128
    """Square image side in pixels: even (video encoding needs it), 16..1024."""
    seed: int = 0
    """Base seed; each episode's env seed derives from (seed, task, attempt) and is recorded."""
    workers: int = min(os.cpu_count() or 1, 8)
    """Worker processes that simulate and render; 0 = in this process (default: CPU count, at most 8)."""
    steps_after_success: int = 10
    """Frames kept after the first success (not the idle tail)."""
    max_attempts: int = 5
    """Attempts allowed per task, as a multiple of episodes_per_task."""
    max_steps: int | None = None
    """An attempt that has not succeeded by then fails (default: the simulator's step limit)."""
    overwrite: bool = False
    """Replace an existing dataset at the output directory."""
    progress: bool = True
    """Show a progress bar (on a terminal; a log gets one line per finished task either way)."""


@dataclass(frozen=True)
class Collection:
    """A validated `CollectConfig`: everything that decides the dataset's content (workers do not)."""

    simulator: str
    tasks: tuple[str, ...]  # canonical task names, in dataset order
    episodes_per_task: int
    cameras: tuple[str, ...]
    image_size: int
    seed: int
    steps_after_success: int
    max_attempts: int
    max_steps: int
    protocol: str | None = None  # SimulatorSpec.protocols name; None: the simulator has no choice

    @property
    def sim(self) -> SimulatorSpec:
        return get_simulator(self.simulator)


def _int(cfg: CollectConfig, name: str, low: int, high: int | None = None) -> int:
    value = getattr(cfg, name)
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool) or not isinstance(value, int):
        raise VlaforgeError(f"{flag} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise VlaforgeError(f"{flag} must be {bound}, got {value}")
    return value


def resolve(cfg: CollectConfig) -> Collection:
    """Validate `cfg` against its simulator (tasks, cameras, bounds); raises `VlaforgeError`."""
    sim = get_simulator(cfg.simulator)
    if sim.expert_action is None:
        raise VlaforgeError(f"simulator {sim.name!r} has no scripted expert to collect demonstrations with")
    tasks = cfg.tasks if isinstance(cfg.tasks, str) else ",".join(cfg.tasks)
    cams = cfg.cameras if isinstance(cfg.cameras, str) else ",".join(cfg.cameras)
    size = _int(cfg, "image_size", 16, MAX_IMAGE_SIZE)
    if size % 2:
        raise VlaforgeError(f"--image-size must be even (video encoding needs it), got {size}")
    _int(cfg, "workers", 0, 256)
    return Collection(
        simulator=sim.name,
        tasks=tuple(sim.resolve_tasks(tasks, robots=cfg.robots)),
        episodes_per_task=_int(cfg, "episodes_per_task", 1),
        cameras=sim.check_cameras(
            tuple(c.strip() for c in cams.split(",") if c.strip()) or sim.default_cameras
        ),
        image_size=size,
        seed=_int(cfg, "seed", 0, MAX_SEED),
        steps_after_success=_int(cfg, "steps_after_success", 0),
        max_attempts=_int(cfg, "max_attempts", 1),
        max_steps=sim.max_steps if cfg.max_steps is None else _int(cfg, "max_steps", 1),
        protocol=sim.check_protocol(cfg.protocol),
    )


def episode_seed(base: int, task: str, attempt: int) -> int:
    """The env seed of attempt `attempt` of `task` (31-bit, stable across runs and platforms)."""
    state = np.random.SeedSequence([base, zlib.crc32(task.encode()), attempt]).generate_state(1)
    return int(state[0] >> 1)


def dataset_features(c: Collection) -> dict[str, dict[str, Any]]:
    """The LeRobot features of a collection (the writer adds the five index columns)."""
    from vlaforge.data.features import vector_feature, video_feature

    sim = c.sim
    features = {image_key(cam): video_feature(c.image_size) for cam in c.cameras}
    features[STATE] = vector_feature(sim.state.dim, list(sim.state.names))
    if sim.env_state_dim:
        features[ENV_STATE] = vector_feature(sim.env_state_dim)
    features[ACTION] = vector_feature(sim.action.dim, list(sim.action.names))
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
def check_output(root: Path, cfg: Collection, overwrite: bool) -> bool:
    """Decide how to open `root`: True = resume an unfinished collection with the same options.

    Raises `VlaforgeError` for a finished dataset (without overwrite), for an unfinished collection
    made with other options, and for a non-empty directory that is not a dataset.
    """
    layout.check_output_dir(root)  # a file, /proc/x, a read-only disk: refused before any rollout
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
    diff = _option_differences(saved, cfg)
    if diff:
        raise VlaforgeError(
            f"{str(root)!r} holds an unfinished collection made with other options ({diff}); rerun it with the same options to resume, or pass --overwrite"
        )
    return True


def is_collected(cfg: CollectConfig) -> bool:
    """True when `cfg.out` already holds a finished dataset collected with exactly `cfg`'s options
    (what a recipe reuses instead of collecting again); False when it is absent, empty or unfinished.
    A finished dataset made with other options is a `VlaforgeError` naming the differences."""
    c, root = resolve(cfg), Path(cfg.out)
    side = root / SIDECAR
    if not side.is_file():
        return False
    saved = layout.read_json(side, "collection settings")
    if not saved.get("complete"):
        return False
    diff = _option_differences(saved, c)
    if diff:
        raise VlaforgeError(
            f"{str(root)!r} holds a dataset collected with other options ({diff}); move it away or collect elsewhere"
        )
    return True


def _option_differences(saved: dict, cfg: Collection) -> str:
    """The options a sidecar's collection was made with that differ from `cfg` ("" when none)."""
    before = {"protocol": cfg.protocol, **(saved.get("config") or {})}  # older sidecars: the default
    now = _jsonable(asdict(cfg))
    return _differences(before, now) if before != now else ""


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


def _write_sidecar(root: Path, cfg: Collection, complete: bool, per_task: dict | None = None) -> None:
    sim = cfg.sim
    data = {
        "source": sim.name,
        "simulator": sim.name,
        "control_mode": sim.action.control_mode,
        "camera_roles": {cam: sim.camera_role(cam) for cam in cfg.cameras},
        "protocol": cfg.protocol,
        "complete": complete,
        "config": _jsonable(asdict(cfg)),
    }
    if per_task is not None:
        data["expert_success_rate"] = {t: s["success_rate"] for t, s in per_task.items()}
        data["tasks"] = per_task
    layout.atomic_write_json(root / SIDECAR, data)


# ------------------------------------------------------------------------------------- state
def restore_progress(cfg: Collection, committed: list[dict]) -> list[TaskProgress]:
    """Per-task progress from the writer's committed episode metadata (empty for a new dataset)."""
    cap = cfg.max_attempts * cfg.episodes_per_task
    progress = {t: TaskProgress(t, cap) for t in cfg.tasks}
    for ep in committed:
        task, attempt = ep.get(task_key(cfg)), ep.get("attempt")
        if task not in progress or attempt is None or ep.get("seed") != episode_seed(cfg.seed, task, attempt):
            raise VlaforgeError(
                f"cannot resume: committed episode {ep.get('episode_index')} does not belong to this collection; pass --overwrite"
            )
        p = progress[task]
        p.committed += 1
        p.seeds.append(int(ep["seed"]))
        p.cursor = p.next_attempt = max(p.cursor, int(attempt) + 1)
    return list(progress.values())


def task_key(cfg: Collection) -> str:
    """The episode metadata key holding the simulator's task name (`metaworld_task` for Meta-World)."""
    return f"{cfg.simulator}_task"


def _spec(cfg: Collection, task: str, attempt: int) -> AttemptSpec:
    return AttemptSpec(
        simulator=cfg.simulator,
        module=cfg.sim.module,
        task=task,
        seed=episode_seed(cfg.seed, task, attempt),
        cameras=cfg.cameras,
        image_size=cfg.image_size,
        steps_after_success=cfg.steps_after_success,
        max_steps=cfg.max_steps,
        protocol=cfg.protocol,
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

    def __init__(self, cfg: Collection, writer: LeRobotWriter, progress: list[TaskProgress], bar: Any):
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
                future = executor.submit(run_attempt, _spec(self.cfg, p.task, p.next_attempt))
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
            task_key(self.cfg): p.task,
            "success_step": rollout.success_step,
        }
        if self.cfg.sim.robot_of is not None:  # the arm of each episode (robosuite)
            meta["robot"] = self.cfg.sim.robot_of(p.task)
        self.writer.add_episode(rollout.frames, self.cfg.sim.instructions[p.task], metadata=meta)
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


def collect(cfg: CollectConfig) -> CollectSummary:
    """Collect (or resume collecting) `cfg` into `cfg.out`; returns per-task figures."""
    c = resolve(cfg)
    root = Path(cfg.out)
    resume = check_output(root, c, cfg.overwrite)
    writer = LeRobotWriter(
        root,
        fps=c.sim.fps,
        robot_type=c.sim.dataset_robot_type(c.tasks),
        features=dataset_features(c),
        resume=resume,
        overwrite=cfg.overwrite,
    )
    _write_sidecar(root, c, complete=False)
    progress = restore_progress(c, writer.episode_metadata())
    start = time.perf_counter()
    bar = _bar(c, writer.num_episodes, cfg.progress)
    collector = _Collector(c, writer, progress, bar)
    executor = _executor(cfg.workers)
    try:
        collector.run(executor, window=max(2, 2 * cfg.workers))
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        if bar is not None:
            bar.close()
    per_task = summarize(progress)
    if writer.num_episodes == 0:
        raise VlaforgeError("the expert succeeded in no attempt; nothing to write")
    writer.finalize()
    _write_sidecar(root, c, complete=True, per_task=per_task)
    frames = sum(ep["length"] for ep in writer.episode_metadata())
    seconds = time.perf_counter() - start
    return CollectSummary(root, writer.num_episodes, frames, seconds, per_task, new_frames=collector.frames)


def _bar(cfg: Collection, initial: int, enabled: bool) -> Any:
    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    total = cfg.episodes_per_task * len(cfg.tasks)
    every = 0.1 if sys.stderr.isatty() else 30.0  # a log file gets a line every 30 s
    return tqdm(total=total, initial=initial, unit="ep", desc="collect", dynamic_ncols=True, file=sys.stderr,
                mininterval=every)  # fmt: skip


def run(cfg: CollectConfig) -> int:
    """The `vlaforge collect` command: collect, then print each task's expert success rate; 0."""
    summary = collect(cfg)
    _report(summary, cfg.episodes_per_task)
    return 0


def _report(summary: CollectSummary, target: int) -> None:
    width = max(len(t) for t in summary.per_task)
    print("expert success rate per task (successes / attempts):")
    for task, s in summary.per_task.items():
        rate = f"{100 * s['success_rate']:.0f}%" if s["success_rate"] is not None else "n/a"
        print(f"  {task:<{width}}  {s['episodes']}/{s['attempts']}  {rate}")
    fps = summary.new_frames / summary.seconds if summary.seconds > 0 else 0.0
    print(
        f"dataset {summary.root}: {summary.episodes} episodes, {summary.frames} frames"
        f" ({summary.new_frames} frames written in {summary.seconds:.1f} s this run, {fps:.0f} frames/s)"
    )
    short = summary.short_tasks(target)
    if short:
        print(f"vlaforge: warning: fewer than {target} episodes for: {', '.join(short)}", file=sys.stderr)
