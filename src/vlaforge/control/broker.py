"""Robot-side chunk execution: per-step actions from a chunk-predicting policy or client.

Three ways to turn `[H, A]` chunks into one action per control step:

- receding horizon and ACT temporal ensembling: `vlaforge.control.execution` (`RecedingHorizon`,
  `TemporalEnsemble`, `ChunkBroker`), shared with the eval runner and re-exported here;
- `AsyncChunkBroker` (this module): execute the current chunk step by step and, when only `refill_at`
  of its actions remain (counting the current step's), request the next chunk *in a background
  thread* with the current observation while the robot keeps executing them (`refill_at=0`: only
  when the chunk is used up, openpi's `ActionChunkBroker`). When the new chunk arrives `d` steps after it was requested, its first
  `d` rows are already in the past and dropped (row 0 was predicted for the request step); the rest
  overlaps the remaining old plan, and the overlap is cross-faded linearly (`blend_overlap`): on the
  i-th of L overlapping steps the new chunk has weight (i+1)/(L+1), so the first executed action is
  mostly the old plan and the last mostly the new one, with no jump at either end. After the overlap
  the new chunk is used alone. If the plan runs dry before the new chunk arrives, `act` waits for it
  (counted in `stats["starved"]`), or with `block=False` returns None, which a `SafetySupervisor`
  turns into a hold and its watchdog into a stop when the wait grows too long.
  `synchronous=True` does the same without a thread (request inline, d = 0): a receding horizon
  whose re-planning point blends instead of cutting.

  `rtc=True` (real-time chunking): each request after the first passes the plan still to execute
  and the last *measured* inference delay (in control steps) to the policy's
  `infer_guided(obs, committed, delay)`, which samples the chunk guided toward that plan
  (`vlaforge.models.rtc`; `vlaforge.control.local.LocalPolicy` implements it for a flow-head
  checkpoint in this process).

Policies are anything with openpi's `infer(obs) -> {"actions": [H, A]}` (a `PolicyClient`,
openpi's `WebsocketClientPolicy`, a `SafetySupervisor`, a `LocalPolicy`) or a plain function `obs -> [H, A]`.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from vlaforge.control.execution import ChunkBroker, RecedingHorizon, TemporalEnsemble, as_chunk, make_executor

__all__ = [
    "AsyncChunkBroker",
    "ChunkBroker",
    "RecedingHorizon",
    "TemporalEnsemble",
    "blend_overlap",
    "chunk_fn",
    "make_executor",
]


def chunk_fn(policy: Any) -> Callable[[Any], np.ndarray]:
    """`obs -> float [H, A]` from an openpi-style policy (`infer(obs)["actions"]`) or a function."""
    if hasattr(policy, "infer"):
        return lambda obs: np.asarray(policy.infer(obs)["actions"], dtype=np.float64)
    return lambda obs: np.asarray(policy(obs), dtype=np.float64)


def blend_overlap(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Cross-fade the remaining old plan [R, A] into the time-aligned new chunk [N, A] -> [max(R, N), A].

    Over the L = min(R, N) overlapping steps the new chunk's weight rises linearly, (i+1)/(L+1) at
    step i; past the overlap the longer of the two continues alone (normally the new chunk).
    """
    overlap = min(len(old), len(new))
    w = (np.arange(1, overlap + 1) / (overlap + 1))[:, None]  # [L, 1]
    mixed = (1 - w) * old[:overlap] + w * new[:overlap]  # [L, A]
    tail = new[overlap:] if len(new) >= len(old) else old[overlap:]
    return np.concatenate([mixed, tail], axis=0)


class AsyncChunkBroker:
    """Per-step actions with the next chunk requested `refill_at` steps early (see the module doc)."""

    def __init__(
        self,
        policy: Any,
        *,
        refill_at: int = 4,
        synchronous: bool = False,
        block: bool = True,
        rtc: bool = False,
    ) -> None:
        if refill_at < 0:
            raise ValueError(f"refill_at must be >= 0, got {refill_at}")
        if rtc and not hasattr(policy, "infer_guided"):
            raise ValueError(
                "rtc=True needs a policy with infer_guided(obs, committed, delay) (e.g. LocalPolicy)"
            )
        self.rtc = rtc
        self._infer = chunk_fn(policy)
        self._policy = policy
        self.refill_at = refill_at
        self.synchronous = synchronous
        self.block = block
        self._pool = None if synchronous else ThreadPoolExecutor(1, thread_name_prefix="vlaforge-chunk")
        self.stats = {"requests": 0, "blended": 0, "starved": 0, "stale": 0, "guided": 0}
        self.delay_steps = 0  # the last measured inference delay, in control steps (fed to RTC)
        self.reset()

    def reset(self) -> None:
        """Forget the plan and any chunk in flight (its result is discarded); reset the policy too."""
        pending = getattr(self, "_pending", None)
        if pending is not None:  # never use the policy (one websocket) from two threads at once
            pending.exception()
        self._plan = np.zeros((0, 0))
        self._pending: Future | None = None
        self._pending_step = 0
        self._step = 0
        if hasattr(self._policy, "reset"):
            self._policy.reset()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def infer(self, obs: Any) -> dict[str, np.ndarray]:
        """openpi-style: `{"actions": float [A]}` for this control step."""
        return {"actions": self.act(obs)}

    def act(self, obs: Any) -> np.ndarray | None:
        """The action [A] for the current control step, given the current observation.

        With `block=False`, returns None while no chunk has arrived yet (a `SafetySupervisor`
        turns None into a hold) instead of waiting.
        """
        if self._pending is not None and (self._pending.done() or (len(self._plan) == 0 and self.block)):
            self.stats["starved"] += int(not self._pending.done())
            self._merge(self._pending.result())
        if len(self._plan) <= self.refill_at and self._pending is None:
            self._request_next(obs)  # synchronous: merged at once; else in flight
        if len(self._plan) == 0 and self._pending is not None and self.block:
            self._merge(self._pending.result())
        if len(self._plan) == 0:
            self.stats["starved"] += 1
            self._step += 1
            return None
        action, self._plan = self._plan[0], self._plan[1:]
        self._step += 1
        return action

    def _request_now(self, obs: Any) -> np.ndarray:
        self.stats["requests"] += 1
        return as_chunk(self._infer(obs))

    def _request_next(self, obs: Any) -> None:
        """Ask for the chunk that follows the current plan; row 0 is predicted for this step."""
        self._pending_step = self._step
        if self.synchronous:  # merge right away: the remaining old steps blend into the new chunk
            self._merge(self._request_now(obs))
            return
        self.stats["requests"] += 1
        snapshot = dict(obs) if isinstance(obs, dict) else obs  # the caller may reuse its dict
        delay = min(self.delay_steps, len(self._plan))
        if self.rtc and len(self._plan) and delay:  # guide the chunk toward what will still run
            self.stats["guided"] += 1
            plan = self._plan.copy()
            self._pending = self._pool.submit(
                lambda: as_chunk(self._policy.infer_guided(snapshot, plan, delay)["actions"])
            )
            return
        self._pending = self._pool.submit(lambda: as_chunk(self._infer(snapshot)))

    def _merge(self, chunk: np.ndarray) -> None:
        self._pending = None
        self.delay_steps = self._step - self._pending_step  # measured: the next guided request uses it
        aligned = chunk[self._step - self._pending_step :]  # [N - d, A]: rows still in the future
        if len(aligned) == 0:
            self.stats["stale"] += 1
            return
        self.stats["blended"] += int(len(self._plan) > 0)
        self._plan = blend_overlap(self._plan, aligned) if len(self._plan) else aligned
