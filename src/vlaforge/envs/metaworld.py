"""Meta-World v3 as a vlaforge `Environment`: rendered cameras, proprio, privileged state, expert.

Built from Meta-World's env class directly (no gymnasium wrappers): one `SawyerXYZEnv` with the goal
observable (MT setting, obs[36:39] = goal), plus our own fast `mujoco.Renderer` (see `render.py`).

Per-episode variation, two protocols (`PROTOCOLS`; docs/meta-world-protocols.md):
- `heldout` (default): the placement is drawn from the task's random-reset space with the episode's
  seed (`seed -> env.np_random -> rand_vec`), so every seed is a fresh, reproducible placement and
  disjoint seeds give disjoint episodes (evaluation picks seeds the dataset did not use).
- `published`: the benchmark's own 50 fixed goal/object placements per task, Meta-World's
  `MT1(task, seed=42).train_tasks` (the seed LeRobot's Meta-World environment builds its MT1 with);
  seed s takes placement s mod 50, so collection and evaluation draw from the same 50 placements, as
  the benchmark's MT1/MT10/MT50 (and LeRobot's metaworld_mt50 data, recorded on fixed positions) do.
  Evaluation placements are then placements that training saw.

Cameras: Meta-World's seven, and `workspace` (`VIEWS`): corner2's image cropped to the workspace and
drawn at full size (a longer lens, not a Meta-World camera; LeRobot and the published protocol use
corner2).

Observation: `observation.state` = obs39[0:4] (hand xyz, gripper opening), float32;
`observation.environment_state` = obs39 (39), float32; images upright uint8 [H, W, 3].
Actions are clipped to [-1, 1] (the simulator would clip them anyway); `expert_action` returns the
clipped scripted-expert action, which is what the collector records.

Deviation from Meta-World's own reset: its tasks write the episode's goal site (reach, push,
pick-place) and often the object's body (drawer, window, peg box) into `model.site_pos` /
`model.body_pos` after its last `mj_forward`, so the frame rendered at reset, and the object and
goal entries of the observation it returns, showed them where the previous episode (or the model
file) had them: hundreds of pixels of the 96 px frame on drawer-open, peg-insert-side and the
windows. `reset` recomputes the positions (`mj_kinematics`: no physics state changes) and the
observation from them, so frame 0 and obs39 at reset describe this episode's scene.
"""

from __future__ import annotations

import functools
import pickle
import warnings
from typing import Any

import mujoco
import numpy as np

from vlaforge.envs import render as _render
from vlaforge.envs import tasks as _tasks
from vlaforge.envs.base import RenderedEnv, check_seed
from vlaforge.envs.registry import ActionSpace, Camera, SimulatorSpec, StateSpace, register
from vlaforge.envs.tasks import TASK_DESCRIPTIONS, canonical
from vlaforge.errors import VlaforgeError, unknown
from vlaforge.keys import ENV_STATE, STATE, TASK, image_key

#: Meta-World's control rate (frames per second of a dataset).
FPS = 80
#: Meta-World's episode limit.
MAX_STEPS = 500
#: The benchmark's fixed placements per task (Meta-World's MT1 train tasks) and the seed of their draw.
FIXED_PLACEMENTS, PLACEMENT_SEED = 50, 42
PROTOCOLS = {
    "heldout": "a fresh placement per seed from the task's random-reset space (no evaluation placement is a training one)",
    "published": f"the benchmark's {FIXED_PLACEMENTS} fixed placements per task (MT1 seed {PLACEMENT_SEED}); seed s -> placement s mod {FIXED_PLACEMENTS}",
}
#: Views that are crops of a camera's image (`render.CropView`): `workspace` is corner2 through a 1.6x
#: longer lens framing where MT50's hand paths, objects and goals lie (projected from expert rollouts:
#: all of MT10's and ~99% of MT50's; sweep's and stick-pull's off-table goals fall below it), so small
#: targets (reach's goal, push's puck) cover ~2.6x the pixels of corner2 at the same image size.
VIEWS = {"workspace": _render.CropView("corner2", center=(0.2, 0.05), half=0.62)}
CAMERAS = ("topview", "corner", "corner2", "corner3", "corner4", "behindGripper", "gripperPOV", *VIEWS)
#: Each camera's role in a mixture (see `vlaforge.envs.registry.Camera`).
CAMERA_ROLES = {
    "topview": "top",
    "corner": "secondary",
    "corner2": "primary",
    "corner3": "secondary",
    "corner4": "secondary",
    "behindGripper": "wrist",
    "gripperPOV": "wrist",
    "workspace": "primary",
}


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


class MetaWorldEnv(RenderedEnv):
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
        protocol: str = "heldout",
    ):
        if protocol not in PROTOCOLS:
            raise unknown("Meta-World protocol", protocol, PROTOCOLS)
        self.task = canonical(task)
        self.protocol = protocol
        self.instruction = TASK_DESCRIPTIONS[self.task]
        self.cameras = tuple(cameras)
        self.image_size = int(image_size)
        self.max_steps = int(max_steps)
        _check_cameras(self.cameras)
        self._env = _make_sawyer(self.task)
        self._placements = fixed_placements(self.task) if protocol == "published" else None
        self._env.max_path_length = max(self.max_steps, MAX_STEPS)
        _render.place_cameras(self._env.model)
        self._renderer = _render.make_renderer(self._env.model, self.image_size)
        self._own_renderer(self._renderer)
        self._expert = None
        self._obs39: np.ndarray | None = None  # [39] float64, the latest raw observation
        self.steps = 0

    def reset(self, seed: int, *, render: bool = True) -> dict[str, Any]:
        """New episode; the placement and the first observation are a function of `seed` alone.

        `render=False` (here and in `step`) leaves the images out: physics-only probing is ~20x faster.
        """
        seed = check_seed(seed)
        if self._placements is not None:  # one of the benchmark's fixed placements
            self._env._last_rand_vec = self._placements[int(seed) % len(self._placements)]
            self._env._freeze_rand_vec = True
        self._env.seed(int(seed))
        self._env.reset()
        mujoco.mj_kinematics(self._env.model, self._env.data)  # positions of the sites/bodies reset moved
        obs = self._env._get_obs()  # [39] from those positions, stacked as Meta-World's reset does
        self._env._prev_obs = obs[:18].copy()
        obs[18:36] = self._env._prev_obs
        self._obs39 = obs.astype(np.float64)
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
        return _render.render(self._renderer, self._env.data, VIEWS.get(camera, camera))

    def _observation(self, render: bool = True) -> dict[str, Any]:
        obs: dict[str, Any] = {image_key(cam): self.render(cam) for cam in self.cameras} if render else {}
        obs[STATE] = self._obs39[:4].astype(np.float32)  # [4]
        obs[ENV_STATE] = self._obs39.astype(np.float32)  # [39]
        obs[TASK] = self.instruction
        return obs

    def _close_simulator(self) -> None:
        self._env.close()


def _check_cameras(cameras: tuple[str, ...]) -> None:
    if not cameras:
        raise VlaforgeError("no camera given; choose from: " + ", ".join(CAMERAS))
    for cam in cameras:
        if cam not in CAMERAS:
            raise unknown("camera", cam, CAMERAS)


@functools.lru_cache(maxsize=64)
def fixed_placements(task: str) -> tuple[np.ndarray, ...]:
    """The benchmark's fixed placements of `task`: the rand_vecs of `MT1(task, seed=42).train_tasks`
    (built once per process and task: Meta-World builds an env to draw them, seconds on a slow CPU)."""
    import metaworld

    bench = metaworld.MT1(task, seed=PLACEMENT_SEED)
    return tuple(np.asarray(pickle.loads(t.data)["rand_vec"]) for t in bench.train_tasks)[:FIXED_PLACEMENTS]


def make_env(
    task: str,
    *,
    cameras: tuple[str, ...] = ("corner2",),
    image_size: int = 128,
    max_steps: int = MAX_STEPS,
    protocol: str = "heldout",
) -> MetaWorldEnv:
    """The registry's factory (`SimulatorSpec.make_env`)."""
    return MetaWorldEnv(task, cameras=cameras, image_size=image_size, max_steps=max_steps, protocol=protocol)


def expert_action(env: MetaWorldEnv) -> np.ndarray:
    """The registry's expert hook: Meta-World's scripted policy for the env's current state."""
    return env.expert_action()


def _ml45(split: str):
    return lambda: _tasks.ml45_split()[split]


SPEC = register(
    SimulatorSpec(
        name="metaworld",
        module=__name__,
        tasks=tuple(_tasks.MT50),
        suites={
            "mt10": tuple(_tasks.MT10),
            "mt50": tuple(_tasks.MT50),
            **{group: tuple(names) for group, names in _tasks.DIFFICULTY.items()},
            "ml45-train": _ml45("train"),
            "ml45-test": _ml45("test"),
        },
        action=ActionSpace(
            dim=4,
            names=("dx", "dy", "dz", "gripper"),
            low=(-1.0,) * 4,
            high=(1.0,) * 4,
            control_mode="delta end-effector position (x, y, z) + gripper effort",
        ),
        state=StateSpace(dim=4, names=("x", "y", "z", "gripper")),
        cameras=tuple(Camera(name, CAMERA_ROLES[name]) for name in CAMERAS),
        default_camera="corner2",
        fps=FPS,
        max_steps=MAX_STEPS,
        success_rule="the task's own `info['success']` at any step (the episode stops there)",
        instructions=dict(TASK_DESCRIPTIONS),
        make_env=make_env,
        expert_action=expert_action,
        canonical_task=canonical,
        task_group=_tasks.difficulty_of,
        robot_type="sawyer",
        env_state_dim=39,
        protocols=dict(PROTOCOLS),
        title="Meta-World",
    )
)
