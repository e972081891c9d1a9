"""Meta-World v3 as a vlaforge `Environment`: rendered cameras, proprio, privileged state, expert.

Built from Meta-World's env class directly (no gymnasium wrappers): one `SawyerXYZEnv` with the goal
observable (MT setting, obs[36:39] = goal), plus our own fast `mujoco.Renderer` (see `render.py`).

Per-episode variation: Meta-World's MT1 benchmark fixes 50 goal/object placements drawn from the
task's random-reset space. We draw the placement from that same space with the episode's seed
instead (`seed -> env.np_random -> rand_vec`), so every seed is a fresh, reproducible placement and
disjoint seeds give disjoint episodes (evaluation picks seeds the dataset did not use).

Observation: `observation.state` = obs39[0:4] (hand xyz, gripper opening), float32;
`observation.environment_state` = obs39 (39), float32; images upright uint8 [H, W, 3].
Actions are clipped to [-1, 1] (the simulator would clip them anyway); `expert_action` returns the
clipped scripted-expert action, which is what the collector records.
"""

from __future__ import annotations

import atexit
import os
import pickle
import threading
import time
import warnings
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from vlaforge.envs import render as _render  # sets MUJOCO_GL before mujoco is imported
from vlaforge.envs.tasks import TASK_DESCRIPTIONS, canonical
from vlaforge.errors import VlaforgeError, unknown
from vlaforge.keys import ACTION, ENV_STATE, REWARD, STATE, SUCCESS, TASK, image_key

#: Meta-World's control rate (frames per second of a dataset).
FPS = 80
#: Meta-World's episode limit.
MAX_STEPS = 500
CAMERAS = ("topview", "corner", "corner2", "corner3", "corner4", "behindGripper", "gripperPOV")


def _make_sawyer(task: str) -> Any:
    """A goal-observable Meta-World env for `task` whose placement is drawn from its own seeded RNG."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS, ML1_ARGS_KWARGS
    from metaworld.types import Task

    cls = ALL_V3_ENVIRONMENTS[task]
    env = cls()
    kwargs = {k: v for k, v in ML1_ARGS_KWARGS[task]["kwargs"].items() if k != "task_id"}
    # A Task as Meta-World's benchmarks encode it; its rand_vec is replaced at every seeded reset.
    data = dict(
        kwargs, rand_vec=np.zeros(env._random_reset_space.low.size), env_cls=cls, partially_observable=False
    )
    env.set_task(Task(env_name=task, data=pickle.dumps(data)))
    env._freeze_rand_vec = False
    env.seeded_rand_vec = True
    return env


class MetaWorldEnv:
    """One Meta-World task with rendered cameras and the scripted expert.

    Args:
        task: a v3 task name (`reach-v3` or `reach`).
        cameras: camera names to render at every step (see `CAMERAS`).
        image_size: square image side in pixels.
        max_steps: episode step limit (`done` turns True there); Meta-World's is 500.
    """

    def __init__(
        self,
        task: str,
        *,
        cameras: tuple[str, ...] = ("corner2",),
        image_size: int = 128,
        max_steps: int = MAX_STEPS,
    ):
        self.task = canonical(task)
        self.instruction = TASK_DESCRIPTIONS[self.task]
        self.cameras = tuple(cameras)
        self.image_size = int(image_size)
        self.max_steps = int(max_steps)
        _check_cameras(self.cameras)
        self._env = _make_sawyer(self.task)
        self._env.max_path_length = max(self.max_steps, MAX_STEPS)
        _render.place_cameras(self._env.model)
        self._renderer = _render.make_renderer(self._env.model, self.image_size)
        # Free the GL context before EGL's own exit hook (registered at the first context) terminates
        # the display; a late __del__ would print EGL errors at interpreter exit.
        self._finalize = weakref.finalize(self, self._renderer.close)
        atexit.register(self._finalize)
        self._expert = None
        self._obs39: np.ndarray | None = None  # [39] float64, the latest raw observation
        self.steps = 0

    def reset(self, seed: int, *, render: bool = True) -> dict[str, Any]:
        """New episode; the placement and the first observation are a function of `seed` alone.

        `render=False` (here and in `step`) leaves the images out: physics-only probing is ~20x faster.
        """
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self._env.seed(int(seed))
        self._obs39, _ = self._env.reset()
        self.steps = 0
        return self._observation(render)

    def step(
        self, action: np.ndarray, *, render: bool = True
    ) -> tuple[dict[str, Any], bool, bool, dict[str, Any]]:
        """Apply a 4-d action (clipped to [-1, 1]); return `(obs, success, done, info)`."""
        if self._obs39 is None:
            raise RuntimeError("call reset(seed) before step()")
        action = np.clip(np.asarray(action, dtype=np.float64).reshape(4), -1.0, 1.0)
        self._obs39, reward, _, _, info = self._env.step(action)
        self.steps += 1
        success = bool(info["success"])
        done = success or self.steps >= self.max_steps
        return self._observation(render), success, done, dict(info, reward=float(reward))

    def expert_action(self) -> np.ndarray:
        """The scripted expert's action for the current state, clipped: float32 [4]."""
        if self._expert is None:
            from metaworld.policies import ENV_POLICY_MAP

            self._expert = ENV_POLICY_MAP[self.task]()
        with warnings.catch_warnings():  # experts warn on every saturated step; we clip anyway
            warnings.simplefilter("ignore", UserWarning)
            action = self._expert.get_action(self._obs39)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def render(self, camera: str) -> np.ndarray:
        """An upright uint8 [H, W, 3] image of the current state from `camera`."""
        return _render.render(self._renderer, self._env.data, camera)

    def _observation(self, render: bool = True) -> dict[str, Any]:
        obs: dict[str, Any] = {image_key(cam): self.render(cam) for cam in self.cameras} if render else {}
        obs[STATE] = self._obs39[:4].astype(np.float32)  # [4]
        obs[ENV_STATE] = self._obs39.astype(np.float32)  # [39]
        obs[TASK] = self.instruction
        return obs

    def close(self) -> None:
        """Free the renderer's GL context and the simulator."""
        self._finalize()
        atexit.unregister(self._finalize)
        self._env.close()

    def __enter__(self) -> MetaWorldEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_cameras(cameras: tuple[str, ...]) -> None:
    if not cameras:
        raise VlaforgeError("no camera given; choose from: " + ", ".join(CAMERAS))
    for cam in cameras:
        if cam not in CAMERAS:
            raise unknown("camera", cam, CAMERAS)


# ---------------------------------------------------------------------------------------------------
# Scripted-expert rollouts (run inside collection workers; kept here so a worker process imports only
# the env side, never torch or the dataset code).


@dataclass(frozen=True)
class RolloutSpec:
    """One expert attempt: which task, which seed, what to render and how much to keep."""

    task: str
    seed: int
    cameras: tuple[str, ...] = ("corner2",)
    image_size: int = 128
    steps_after_success: int = 10  # frames kept after the first success (not the idle tail)
    max_steps: int = MAX_STEPS


@dataclass
class Rollout:
    """The outcome of an attempt; `frames` maps every dataset feature to `[T, ...]` (None on failure)."""

    spec: RolloutSpec
    success_step: int | None  # index of the first step whose `next.success` is True
    sim_steps: int  # physics steps run (probe + recording), for throughput figures
    frames: dict[str, np.ndarray] | None

    @property
    def success(self) -> bool:
        return self.frames is not None


def expert_rollout(env: MetaWorldEnv, spec: RolloutSpec, *, probe: bool = True) -> Rollout:
    """Run the expert from `spec.seed`; on success, record up to `steps_after_success` steps past it.

    `probe=True`: a physics-only pass finds out first whether the attempt succeeds (a failure then
    costs no rendering), then a rendered replay from the same seed records it (the simulator is
    deterministic per seed). `probe=False` records in one rendered pass: cheaper when failures are
    rare, wasteful when they are not. Both give identical frames.
    """
    sim_steps = 0
    if probe:
        found = _probe(env, spec.seed)
        sim_steps = env.steps
        if found is None:
            return Rollout(spec, None, sim_steps, None)
    frames, first = _record(env, spec.seed, spec.steps_after_success)
    return Rollout(spec, first, sim_steps + env.steps, frames if first is not None else None)


def _probe(env: MetaWorldEnv, seed: int) -> int | None:
    env.reset(seed, render=False)
    for t in range(env.max_steps):
        _, success, _, _ = env.step(env.expert_action(), render=False)
        if success:
            return t
    return None


def _record(env: MetaWorldEnv, seed: int, tail: int) -> tuple[dict[str, np.ndarray], int | None]:
    """Rendered expert run until `tail` steps after the first success (or the step limit).

    Frame t holds observation t, the action taken from it, and that action's reward and success.
    Returns the frames and the index of the first success (None: the attempt failed).
    """
    obs = env.reset(seed)
    rows: dict[str, list] = {key: [] for key in (*obs, ACTION, REWARD, SUCCESS) if key != TASK}
    first = None
    for t in range(env.max_steps):
        for key, value in obs.items():
            if key != TASK:
                rows[key].append(value)
        action = env.expert_action()
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
    return frames, first


_WORKER_ENVS: dict[tuple, MetaWorldEnv] = {}
_WORKER_CACHE = 2  # envs kept per process (work arrives grouped by task)
_WORKER_FAILED: set[str] = set()  # tasks whose expert failed here: probe before rendering from now on


def run_spec(spec: RolloutSpec) -> Rollout:
    """Worker entry point: reuse a cached env for (task, cameras, size, max_steps), run one attempt.

    Attempts record in one rendered pass until the task's expert first fails in this process; from
    then on they probe first (see `expert_rollout`). The frames are the same either way.
    """
    key = (spec.task, spec.cameras, spec.image_size, spec.max_steps)
    env = _WORKER_ENVS.pop(key, None)
    if env is None:
        env = MetaWorldEnv(
            spec.task, cameras=spec.cameras, image_size=spec.image_size, max_steps=spec.max_steps
        )
    _WORKER_ENVS[key] = env  # most recent last
    while len(_WORKER_ENVS) > _WORKER_CACHE:
        _WORKER_ENVS.pop(next(iter(_WORKER_ENVS))).close()
    rollout = expert_rollout(env, spec, probe=spec.task in _WORKER_FAILED)
    if not rollout.success:
        _WORKER_FAILED.add(spec.task)
    return rollout


def worker_init(parent_pid: int) -> None:
    """Process-pool initializer: exit when the parent dies (e.g. `kill -9`), never linger as an orphan."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="vlaforge-parent-watch").start()
