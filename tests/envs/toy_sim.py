"""A second simulator in one small module plus one registry entry: a point mass on a square table.

It exists to show (and test) that collection and evaluation take any registered simulator: nothing
outside this file knows it. The point starts and its goal lies at seeded random places; an action
moves it by up to 0.1 per step in x and y; success when it is within 0.05 of the goal. The camera
`top` draws the table from above: the goal red, the point blue.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vlaforge.envs.registry import ActionSpace, Camera, SimulatorSpec, StateSpace, register
from vlaforge.keys import STATE, TASK, image_key

TASKS = {
    "reach-dot": "Move the blue dot onto the red goal",
    "reach-corner": "Move the blue dot to the corner",
}


class PointMassEnv:
    """The `Environment` protocol on a 2-D point mass."""

    def __init__(self, task: str, *, cameras=("top",), image_size: int = 32, max_steps: int = 60) -> None:
        self.task, self.instruction = task, TASKS[task]
        self.cameras, self.image_size, self.max_steps = tuple(cameras), int(image_size), int(max_steps)
        self.pos = self.goal = np.zeros(2)
        self.steps = 0

    def reset(self, seed: int, *, render: bool = True) -> dict[str, Any]:
        rng = np.random.default_rng(seed)
        self.pos = rng.uniform(-1, 1, 2)
        self.goal = rng.uniform(-1, 1, 2) if self.task == "reach-dot" else np.array([0.9, 0.9])
        self.steps = 0
        return self._obs(render)

    def step(self, action: np.ndarray, *, render: bool = True):
        self.pos = np.clip(self.pos + 0.1 * np.clip(np.asarray(action, np.float64), -1, 1), -1, 1)
        self.steps += 1
        success = bool(np.linalg.norm(self.pos - self.goal) < 0.05)
        done = success or self.steps >= self.max_steps
        return self._obs(render), success, done, {"reward": -float(np.linalg.norm(self.pos - self.goal))}

    def _obs(self, render: bool) -> dict[str, Any]:
        obs: dict[str, Any] = {image_key(c): self._draw() for c in self.cameras} if render else {}
        obs[STATE] = self.pos.astype(np.float32)
        obs[TASK] = self.instruction
        return obs

    def _draw(self) -> np.ndarray:
        n = self.image_size
        image = np.full((n, n, 3), 200, np.uint8)
        for point, color in ((self.goal, (220, 30, 30)), (self.pos, (30, 30, 220))):
            r, c = ((point + 1) / 2 * (n - 1)).round().astype(int)
            image[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2] = color
        return image

    def close(self) -> None:
        pass


def make_env(task: str, *, cameras=("top",), image_size: int = 32, max_steps: int = 60) -> PointMassEnv:
    return PointMassEnv(task, cameras=cameras, image_size=image_size, max_steps=max_steps)


def expert_action(env: PointMassEnv) -> np.ndarray:
    return np.clip((env.goal - env.pos) * 10.0, -1.0, 1.0).astype(np.float32)


SPEC = register(
    SimulatorSpec(
        name="pointmass",
        module=__name__,
        tasks=tuple(TASKS),
        suites={"all": tuple(TASKS)},
        action=ActionSpace(2, ("dx", "dy"), (-1.0, -1.0), (1.0, 1.0), "delta position (x, y)"),
        state=StateSpace(2, ("x", "y")),
        cameras=(Camera("top", "primary"),),
        default_camera="top",
        fps=10,
        max_steps=60,
        success_rule="the point is within 0.05 of the goal",
        instructions=dict(TASKS),
        make_env=make_env,
        expert_action=expert_action,
        robot_type="pointmass",
        title="PointMass",
    )
)
