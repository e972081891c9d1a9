"""Scripted-expert attempts for collection, for any registered simulator with an expert.

Run inside collection workers; kept on the envs floor so a worker process imports only the
simulator side, never torch or the dataset code. The environment is built through the registry
(`SimulatorSpec.make_env`) and the expert is the spec's `expert_action` hook.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import numpy as np

from vlaforge.envs.base import Environment
from vlaforge.envs.registry import SimulatorSpec, get_simulator
from vlaforge.errors import VlaforgeError
from vlaforge.keys import ACTION, REWARD, SUCCESS, TASK


@dataclass(frozen=True)
class AttemptSpec:
    """One expert attempt: which simulator and task, which seed, what to render and how much to keep."""

    task: str
    seed: int
    cameras: tuple[str, ...] = ("corner2",)
    image_size: int = 128
    steps_after_success: int = 10  # frames kept after the first success (not the idle tail)
    max_steps: int = 500
    simulator: str = "metaworld"
    module: str | None = None  # the module registering `simulator` when it is not built in
    protocol: str | None = None  # the placement protocol (SimulatorSpec.protocols; None: the default)


@dataclass
class Rollout:
    """The outcome of an attempt; `frames` maps every dataset feature to `[T, ...]` (None on failure)."""

    spec: AttemptSpec
    success_step: int | None  # index of the first step whose `next.success` is True
    sim_steps: int  # physics steps run (probe + recording), for throughput figures
    frames: dict[str, np.ndarray] | None

    @property
    def success(self) -> bool:
        return self.frames is not None


def _expert(sim: SimulatorSpec):
    if sim.expert_action is None:
        raise VlaforgeError(f"simulator {sim.name!r} has no scripted expert to collect demonstrations with")
    return sim.expert_action


def expert_rollout(env: Environment, spec: AttemptSpec, *, probe: bool = True) -> Rollout:
    """Run the expert from `spec.seed`; on success, record up to `steps_after_success` steps past it.

    `probe=True`: a physics-only pass finds out first whether the attempt succeeds (a failure then
    costs no rendering), then a rendered replay from the same seed records it (the simulator is
    deterministic per seed). `probe=False` records in one rendered pass: cheaper when failures are
    rare, wasteful when they are not. Both give identical frames.
    """
    expert = _expert(get_simulator(spec.simulator, spec.module))
    probed = 0
    if probe:
        found, probed = probe_attempt(env, expert, spec.seed, spec.max_steps)
        if found is None:
            return Rollout(spec, None, probed, None)
    frames, first, steps = _record(env, expert, spec)
    return Rollout(spec, first, probed + steps, frames if first is not None else None)


def probe_attempt(env: Environment, expert, seed: int, max_steps: int) -> tuple[int | None, int]:
    """Physics only: (the step of the expert's first success or None, steps run)."""
    env.reset(seed, render=False)
    for t in range(max_steps):
        _, success, _, _ = env.step(expert(env), render=False)
        if success:
            return t, t + 1
    return None, max_steps


def _record(env: Environment, expert, spec: AttemptSpec) -> tuple[dict[str, np.ndarray], int | None, int]:
    """Rendered expert run until `tail` steps after the first success (or the step limit).

    Frame t holds observation t, the action taken from it, and that action's reward and success.
    Returns the frames, the index of the first success (None: the attempt failed) and the steps run.
    """
    obs = env.reset(spec.seed)
    rows: dict[str, list] = {key: [] for key in (*obs, ACTION, REWARD, SUCCESS) if key != TASK}
    first, tail, t = None, spec.steps_after_success, 0
    for t in range(spec.max_steps):
        for key, value in obs.items():
            if key != TASK:
                rows[key].append(value)
        action = expert(env)
        last_frame = first is not None and t >= first + tail  # its next observation is never used
        obs, success, _, info = env.step(action, render=not last_frame)
        rows[ACTION].append(action)
        rows[REWARD].append(info["reward"])
        rows[SUCCESS].append(success)
        if success and first is None:
            first = t
            last_frame = tail == 0
        if last_frame:
            break
    frames = {key: np.stack(values) for key, values in rows.items()}
    frames[REWARD] = frames[REWARD].astype(np.float32).reshape(-1, 1)  # [T, 1]
    frames[SUCCESS] = frames[SUCCESS].astype(bool).reshape(-1, 1)  # [T, 1]
    return frames, first, t + 1


_WORKER_ENVS: dict[tuple, Environment] = {}
_WORKER_CACHE = 2  # envs kept per process (work arrives grouped by task)
_WORKER_FAILED: set[tuple[str, str]] = set()  # (simulator, task) whose expert failed here: probe first


def run_attempt(spec: AttemptSpec) -> Rollout:
    """Worker entry point: reuse a cached env for (simulator, task, cameras, size, max_steps), run one
    attempt.

    Attempts record in one rendered pass until the task's expert first fails in this process; from
    then on they probe first (see `expert_rollout`). The frames are the same either way.
    """
    key = (spec.simulator, spec.task, spec.cameras, spec.image_size, spec.max_steps, spec.protocol)
    env = _WORKER_ENVS.pop(key, None)
    if env is None:
        sim = get_simulator(spec.simulator, spec.module)
        env = sim.new_env(
            spec.task,
            cameras=spec.cameras,
            image_size=spec.image_size,
            max_steps=spec.max_steps,
            protocol=spec.protocol,
        )
    _WORKER_ENVS[key] = env  # most recent last
    while len(_WORKER_ENVS) > _WORKER_CACHE:
        _WORKER_ENVS.pop(next(iter(_WORKER_ENVS))).close()
    rollout = expert_rollout(env, spec, probe=(spec.simulator, spec.task) in _WORKER_FAILED)
    if not rollout.success:
        _WORKER_FAILED.add((spec.simulator, spec.task))
    return rollout


def worker_init(parent_pid: int) -> None:
    """Process-pool initializer: exit when the parent dies (e.g. `kill -9`), never linger as an orphan."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="vlaforge-parent-watch").start()
