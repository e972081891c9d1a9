"""The environment protocol shared by collection, evaluation and serving.

Observations are plain dicts of numpy arrays with LeRobot keys (one env, no batch/time axis):

    observation.images.<camera>     uint8   [H, W, 3]  upright (LeRobot orientation)
    observation.state               float32 [S]        proprio (Meta-World: hand xyz + gripper, S=4)
    observation.environment_state   float32 [E]        privileged sim state (Meta-World: 39)
    task                            str                the instruction in natural language

`step(action)` returns `(obs, success, done, info)`: `success` is this step's success flag,
`done` is True once the episode should stop (success, or the step limit), `info["reward"]` is the
environment's reward. Environments may be stepped after `done` until their hard step limit; the
collector uses that to record a few frames after the first success.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

Observation = dict[str, Any]


@runtime_checkable
class Environment(Protocol):
    """What the collector, the eval runner and the server need from a simulated robot."""

    task: str
    instruction: str

    def reset(self, seed: int, *, render: bool = True) -> Observation:
        """Start an episode; the same seed gives the same initial scene and observation.

        `render=False` skips the cameras (the observation then has no image keys): for physics-only
        work such as probing whether a seed succeeds."""
        ...

    def step(
        self, action: np.ndarray, *, render: bool = True
    ) -> tuple[Observation, bool, bool, dict[str, Any]]:
        """Apply one action; return `(obs, success, done, info)` with `info["reward"]`."""
        ...

    def close(self) -> None:
        """Release the simulator and renderer."""
        ...
