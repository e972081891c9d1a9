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

import atexit
import weakref
from typing import Any, Protocol, TypeVar, runtime_checkable

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


def check_seed(seed: Any) -> int:
    """`seed` as an int if it is a non-negative integer (not a bool); else ValueError."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


_E = TypeVar("_E", bound="RenderedEnv")


class RenderedEnv:
    """The lifecycle every MuJoCo-rendered environment shares: `_own_renderer(renderer)` once at
    construction; `close()` frees the renderer's GL context (then `_close_simulator()`), and so do
    garbage collection and interpreter exit, before EGL's own exit hook terminates the display (a
    late `__del__` would print EGL errors). Usable as a context manager."""

    def _own_renderer(self, renderer: Any) -> None:
        self._finalize = weakref.finalize(self, renderer.close)
        atexit.register(self._finalize)

    def _close_simulator(self) -> None:
        """Release the simulator itself (override where it holds resources)."""

    def close(self) -> None:
        """Free the renderer's GL context and the simulator."""
        self._finalize()
        atexit.unregister(self._finalize)
        self._close_simulator()

    def __enter__(self: _E) -> _E:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
