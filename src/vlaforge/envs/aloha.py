"""ALOHA bimanual (gym-aloha's scenes) as a vlaforge `Environment`: 14-d joint actions, cameras, expert.

Tasks `transfer-cube` (the right arm picks the cube and hands it to the left) and `insertion` (each
arm picks up one part and the peg goes into the socket); suite `aloha` = both. The physics, placement
and reward are in `aloha_scene` (gym-aloha's facts, driven with raw MuJoCo); the scripted expert in
`aloha_expert` (ACT's recipe: plan in the mocap scene, replay the joints).

Action [14] = absolute joint targets, per arm (left first) 6 joints + the gripper opening normalized
to 0 (closed) .. 1 (open), names as gym-aloha's `ACTIONS`; clipped to the actuators' ranges.
Observation: `observation.state` [14] = the same layout measured (gym-aloha's `qpos` observation),
float32; images upright uint8 [H, W, 3] (MuJoCo's renderer output as is, as gym-aloha returns it);
no `observation.environment_state`. Control at 50 Hz; the episode limit is 400 steps (LeRobot's
`episode_length`; gym-aloha's gymnasium registration says 300). Success = reward 4 (the maximum) at
any step. Rendering uses `render.make_renderer`'s fast settings, at collection and evaluation alike.

The expert hook: `expert_action(env)` returns the planned action for the env's current step. The plan
for the episode's seed is computed on the first call after `reset` (about 0.3 s of physics, no
rendering) and cached, so probing a seed and then recording it plans once; after the plan's end the
last action is held.
"""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np

from vlaforge.envs import aloha_scene as scene
from vlaforge.envs import render as _render  # the fast render settings (shared with Meta-World)
from vlaforge.envs.base import RenderedEnv, check_seed
from vlaforge.envs.registry import ActionSpace, Camera, SimulatorSpec, StateSpace, register
from vlaforge.keys import STATE, TASK, image_key

FPS = 50
MAX_STEPS = 400
INSTRUCTIONS = {
    "transfer-cube": "Pick up the cube with the right arm and transfer it to the left arm.",
    "insertion": "Insert the peg into the socket.",
}
#: Every camera of the scenes with its role in a mixture.
CAMERA_ROLES = {
    "top": "primary",
    "angle": "secondary",
    "front_close": "secondary",
    "left_pillar": "secondary",
    "right_pillar": "secondary",
    "left_wrist": "wrist",
    "right_wrist": "wrist_right",
}
_JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper")
#: gym-aloha's action / qpos names: left_arm_waist, ..., left_arm_gripper, right_arm_waist, ...
NAMES = tuple(f"{side}_arm_{j}" for side in ("left", "right") for j in _JOINTS)
_ARM_LOW = (-3.14158, -1.85005, -1.76278, -3.14158, -1.8675, -3.14158, 0.0)
_ARM_HIGH = (3.14158, 1.25664, 1.6057, 3.14158, 2.23402, 3.14158, 1.0)
_CACHED_PLANS = 2


def canonical(task: str) -> str:
    """`transfer_cube`, `Transfer-Cube` -> `transfer-cube`."""
    return task.strip().lower().replace("_", "-")


class AlohaEnv(RenderedEnv):
    """One ALOHA task with rendered cameras and the replayed scripted expert.

    Args:
        task: `transfer-cube` or `insertion`.
        cameras: camera names to render at every step (see `CAMERA_ROLES`).
        image_size: square image side in pixels.
        max_steps: episode step limit (`done` turns True there).
    """

    def __init__(
        self,
        task: str,
        *,
        cameras: tuple[str, ...] = ("top",),
        image_size: int = 128,
        max_steps: int = MAX_STEPS,
    ):
        self.task = SPEC.task(task)
        self.instruction = INSTRUCTIONS[self.task]
        self.cameras = SPEC.check_cameras(tuple(cameras))
        self.image_size = int(image_size)
        self.max_steps = int(max_steps)
        self._model = scene.load_model(self.task)
        self._data = mujoco.MjData(self._model)
        self._reward = scene.ContactReward.for_model(self.task, self._model)
        self._renderer = _render.make_renderer(self._model, self.image_size)
        self._own_renderer(self._renderer)
        self._low, self._high = np.array(_ARM_LOW * 2), np.array(_ARM_HIGH * 2)
        self._planner = None
        self._plans: dict[int, np.ndarray] = {}  # seed -> [T, 14], the most recent last
        self._seed: int | None = None
        self.objects = np.zeros(0)  # the episode's initial object poses (7 per object)
        self.steps = 0

    def reset(self, seed: int, *, render: bool = True) -> dict[str, Any]:
        """New episode; the object placement is gym-aloha's for `seed`, the arms start at rest."""
        seed = check_seed(seed)
        self._seed = int(seed)
        self.objects = scene.sample_placement(self.task, self._seed)
        scene.reset_data(self._model, self._data, self.objects)
        self.steps = 0
        return self._observation(render)

    def step(
        self, action: np.ndarray, *, render: bool = True
    ) -> tuple[dict[str, Any], bool, bool, dict[str, Any]]:
        """Apply a 14-d joint action (clipped to the actuator ranges); return `(obs, success, done, info)`."""
        if self._seed is None:
            raise RuntimeError("call reset(seed) before step()")
        action = np.clip(np.asarray(action, dtype=np.float64).reshape(14), self._low, self._high)
        self._data.ctrl[:] = scene.joint_ctrl(action)
        scene.advance(self._model, self._data)
        self.steps += 1
        reward = self._reward(self._data)
        success = reward == scene.MAX_REWARD
        done = success or self.steps >= self.max_steps
        return self._observation(render), success, done, {"reward": float(reward), "is_success": success}

    def expert_action(self) -> np.ndarray:
        """The replayed expert's action for the current step: float32 [14] (planned on first use)."""
        if self._seed is None:
            raise RuntimeError("call reset(seed) before expert_action()")
        plan = self._plans.pop(self._seed, None)
        if plan is None:
            if self._planner is None:
                from vlaforge.envs.aloha_expert import Planner

                self._planner = Planner(self.task, self._low, self._high)
            plan = self._planner.plan(self.objects)
        self._plans[self._seed] = plan
        while len(self._plans) > _CACHED_PLANS:
            self._plans.pop(next(iter(self._plans)))
        return plan[min(self.steps, len(plan) - 1)].copy()

    def render(self, camera: str) -> np.ndarray:
        """An upright uint8 [H, W, 3] image of the current state from `camera`."""
        return _render.render(self._renderer, self._data, camera)

    def _observation(self, render: bool = True) -> dict[str, Any]:
        obs: dict[str, Any] = {image_key(cam): self.render(cam) for cam in self.cameras} if render else {}
        obs[STATE] = scene.joint_state(self._data.qpos).astype(np.float32)  # [14]
        obs[TASK] = self.instruction
        return obs


def make_env(
    task: str, *, cameras: tuple[str, ...] = ("top",), image_size: int = 128, max_steps: int = MAX_STEPS
) -> AlohaEnv:
    """The registry's factory (`SimulatorSpec.make_env`)."""
    return AlohaEnv(task, cameras=cameras, image_size=image_size, max_steps=max_steps)


def expert_action(env: AlohaEnv) -> np.ndarray:
    """The registry's expert hook: the replayed plan's action for the env's current step."""
    return env.expert_action()


SPEC = register(
    SimulatorSpec(
        name="aloha",
        module=__name__,
        tasks=tuple(INSTRUCTIONS),
        suites={"aloha": tuple(INSTRUCTIONS)},
        action=ActionSpace(
            dim=14,
            names=NAMES,
            low=_ARM_LOW * 2,
            high=_ARM_HIGH * 2,
            control_mode="absolute joint positions (6 per arm) + normalized gripper opening (0 closed, 1 open)",
        ),
        state=StateSpace(dim=14, names=NAMES),
        cameras=tuple(Camera(name, role) for name, role in CAMERA_ROLES.items()),
        default_camera="top",
        fps=FPS,
        max_steps=MAX_STEPS,
        success_rule="the task's contact reward reaches its maximum, 4, at any step (the episode stops there)",
        instructions=dict(INSTRUCTIONS),
        make_env=make_env,
        expert_action=expert_action,
        canonical_task=canonical,
        robot_type="aloha",
        title="ALOHA",
    )
)
