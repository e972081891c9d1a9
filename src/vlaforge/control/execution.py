"""How a predicted action chunk becomes the actions a robot executes, one step at a time.

Pure numpy, no environment or model dependency: the eval runner (one executor per simulated
environment), the robot-side brokers (`vlaforge.control.broker`) and the server's clients share it.

Every executor follows one small protocol:

    if executor.needs_chunk():
        executor.add_chunk(chunk)      # chunk: float [H, A], H = the policy's horizon
    action = executor.pop()            # float [A], the action for this control step
    executor.reset()                   # at an episode boundary

Modes:
- `RecedingHorizon(k)`: execute the first k of the H predicted actions, then re-plan (Diffusion Policy,
  Octo, pi0). `k` may not exceed H; the remainder of a chunk is discarded at re-planning.
- `SingleStep()`: re-plan every step and execute only the first action (receding horizon with k = 1).
- `TemporalEnsemble(coeff)`: re-plan every step and execute a weighted average of every prediction made
  so far for the current step (ACT). Weights are w_i = exp(-coeff * i) where i = 0 is the *oldest*
  prediction, so with coeff > 0 older predictions count more, as in ACT (coeff 0.01 there); a
  negative coeff favours the newest. The average is kept online: adding a chunk costs O(H * A).

`DelayedExecution(inner, delay)` simulates inference latency: a chunk requested at step t arrives
`delay` control steps later, the robot executing the old plan meanwhile, and its first `delay` rows
(already in the past) are dropped. Over a receding horizon the request goes out when `delay` planned
actions remain, so the old plan covers the wait (naive async execution: the new chunk takes over as it
arrives); over temporal ensembling a chunk is requested every step and each joins the average when it
arrives. `planned()` is the plan still to execute (the remaining old chunk, its unexecuted tail
included), what real-time chunking guides the next chunk toward (`vlaforge.models.rtc`). At an
episode start nothing is planned: the robot waits for the first chunk, which applies at once.

`ChunkBroker(infer, executor)` wraps a chunk-predicting function into a per-step one (the robot-side
action-chunk broker).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol

import numpy as np

ExecutionMode = Literal["receding", "ensemble", "single", "rtc"]
EXECUTION_MODES: tuple[str, ...] = ("receding", "ensemble", "single", "rtc")


class ActionExecutor(Protocol):
    """Turns chunks [H, A] into one action [A] per control step."""

    def needs_chunk(self) -> bool: ...

    def add_chunk(self, chunk: np.ndarray) -> None: ...

    def pop(self) -> np.ndarray: ...

    def reset(self) -> None: ...


def as_chunk(chunk: Any) -> np.ndarray:
    """`chunk` as float64 [H, A] with H >= 1; anything else is a ValueError naming the shape."""
    chunk = np.asarray(chunk, dtype=np.float64)
    if chunk.ndim != 2 or chunk.shape[0] < 1:
        raise ValueError(f"an action chunk must be [H, A] with H >= 1, got shape {chunk.shape}")
    return chunk


class RecedingHorizon:
    """Execute the first `execute_steps` actions of each chunk, then ask for a new one."""

    def __init__(self, execute_steps: int) -> None:
        if execute_steps < 1:
            raise ValueError(f"execute_steps must be >= 1, got {execute_steps}")
        self.execute_steps = execute_steps
        self._queue: list[np.ndarray] = []
        self._tail = np.zeros((0, 0))  # [H - k, A]: the rows of the chunk that will not be executed

    def needs_chunk(self) -> bool:
        return not self._queue

    def add_chunk(self, chunk: np.ndarray) -> None:
        chunk = as_chunk(chunk)  # [H, A]
        if self.execute_steps > chunk.shape[0]:
            raise ValueError(f"execute_steps={self.execute_steps} exceeds the chunk length {chunk.shape[0]}")
        self._queue = list(chunk[: self.execute_steps])
        self._tail = chunk[self.execute_steps :]

    def pop(self) -> np.ndarray:
        if not self._queue:
            raise RuntimeError("no action left: add a chunk first (needs_chunk() is True)")
        return self._queue.pop(0)

    def remaining(self) -> int:
        """Actions still to execute before a new chunk is needed."""
        return len(self._queue)

    def planned(self) -> np.ndarray:
        """The rest of the current chunk [R, A], row 0 = the next action (its unexecuted tail too)."""
        return np.concatenate([np.asarray(self._queue).reshape(-1, self._tail.shape[-1]), self._tail])

    def reset(self) -> None:
        self._queue = []
        self._tail = np.zeros((0, 0))


class SingleStep(RecedingHorizon):
    """Re-plan at every step and execute only the first predicted action."""

    def __init__(self) -> None:
        super().__init__(1)


class TemporalEnsemble:
    """ACT temporal ensembling: average all predictions for the current step, oldest weighted most.

    State: `_sum` [H, A] holds sum_i w_i * a_i for the steps t .. t+H-1 (row 0 = the current step),
    `_weight` [H] the matching sum_i w_i and `_count` [H] how many predictions each row has seen,
    which is the index i of the next prediction to arrive for that row.
    """

    def __init__(self, coeff: float = 0.01) -> None:
        self.coeff = float(coeff)
        self._sum: np.ndarray | None = None
        self._weight = np.zeros(0)
        self._count = np.zeros(0, dtype=np.int64)

    def needs_chunk(self) -> bool:
        return True

    def add_chunk(self, chunk: np.ndarray) -> None:
        chunk = as_chunk(chunk)  # [H, A]
        if self._sum is None or self._sum.shape != chunk.shape:
            self._allocate(chunk.shape)
        w = np.exp(-self.coeff * self._count)  # [H]
        self._sum += w[:, None] * chunk
        self._weight += w
        self._count += 1

    def pop(self) -> np.ndarray:
        if self._sum is None or self._count[0] == 0:
            raise RuntimeError("no prediction for this step: add a chunk first")
        action = self._sum[0] / self._weight[0]  # [A]
        self._sum = np.roll(self._sum, -1, axis=0)
        self._weight = np.roll(self._weight, -1)
        self._count = np.roll(self._count, -1)
        self._sum[-1], self._weight[-1], self._count[-1] = 0.0, 0.0, 0
        return action

    def reset(self) -> None:
        self._sum = None

    def _allocate(self, shape: tuple[int, ...]) -> None:
        self._sum = np.zeros(shape)
        self._weight = np.zeros(shape[0])
        self._count = np.zeros(shape[0], dtype=np.int64)


class DelayedExecution:
    """`inner`'s execution with each chunk arriving `delay` control steps after its request (module doc)."""

    def __init__(self, inner: RecedingHorizon | TemporalEnsemble, delay: int) -> None:
        if delay < 0:
            raise ValueError(f"delay must be >= 0 steps, got {delay}")
        if isinstance(inner, RecedingHorizon) and delay and delay >= inner.execute_steps:
            raise ValueError(
                f"an inference delay of {delay} steps needs more than {delay} executed actions per chunk, "
                f"got {inner.execute_steps}: the old plan would run out before the new chunk arrives"
            )
        self.inner, self.delay = inner, delay
        self._pending: list[list] = []  # [chunk [H, A], steps until it arrives]
        self._started = False
        self.switched = False  # True right after a pop whose next action comes from a new chunk

    def needs_chunk(self) -> bool:
        if not self._started or isinstance(self.inner, TemporalEnsemble):
            return True  # the first chunk; ensembling asks at every step
        return self.inner.remaining() <= self.delay and not self._pending

    def add_chunk(self, chunk: np.ndarray) -> None:
        chunk = as_chunk(chunk)  # [H, A]
        if not self._started or self.delay == 0:
            self.inner.add_chunk(chunk)
            self._started = True
            return
        if self.delay >= len(chunk):
            raise ValueError(
                f"an inference delay of {self.delay} steps leaves nothing of a {len(chunk)}-step chunk"
            )
        self._pending.append([chunk, self.delay])

    def pop(self) -> np.ndarray:
        action = self.inner.pop()
        for item in self._pending:
            item[1] -= 1
        self.switched = bool(self._pending) and self._pending[0][1] == 0
        while self._pending and self._pending[0][1] == 0:
            self.inner.add_chunk(self._pending.pop(0)[0][self.delay :])  # its first rows are past
        return action

    def planned(self) -> np.ndarray:
        """What the robot will still execute of the current plan (receding horizon only)."""
        return self.inner.planned()

    def reset(self) -> None:
        self.inner.reset()
        self._pending, self._started, self.switched = [], False, False


def make_executor(
    mode: str, execute_steps: int = 1, ensemble_coeff: float = 0.01, delay: int = 0
) -> ActionExecutor:
    """The executor for `mode` in EXECUTION_MODES; `delay` > 0 wraps it in `DelayedExecution`
    ("rtc" executes like "receding": the guidance is the policy's part)."""
    if delay:
        inner = make_executor("receding" if mode == "rtc" else mode, execute_steps, ensemble_coeff)
        return DelayedExecution(inner, delay)
    if mode in ("receding", "rtc"):
        return RecedingHorizon(execute_steps)
    if mode == "single":
        return SingleStep()
    if mode == "ensemble":
        return TemporalEnsemble(ensemble_coeff)
    raise ValueError(f"unknown execution mode {mode!r}; choose from {EXECUTION_MODES}")


class ChunkBroker:
    """Per-step actions from a chunk-predicting function: `infer(obs) -> [H, A]` runs only when needed."""

    def __init__(self, infer: Callable[[Any], np.ndarray], executor: ActionExecutor) -> None:
        self.infer = infer
        self.executor = executor

    def act(self, observation: Any) -> np.ndarray:
        if self.executor.needs_chunk():
            self.executor.add_chunk(self.infer(observation))
        return self.executor.pop()

    def reset(self) -> None:
        self.executor.reset()
