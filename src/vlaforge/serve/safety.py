"""A safety supervisor between any policy (or client) and the robot.

`SafetySupervisor(policy, SafetyConfig(...))` has openpi's `infer(obs) -> {"actions": [H, A]}` (the
chunk is passed through the limits as a preview, assuming the robot tracks each command exactly) and
the authoritative per-step path `filter(action, state) -> action` that must run on every command
sent to the robot. Whatever the policy outputs (NaN, Inf, 1e30, the wrong shape, nothing), what
`filter` returns is finite and within every limit below.

Convention (Meta-World, `action_mode="delta"`): the position dims of an action are deltas in
[-1, 1], and the robot's target is `observed position + action_scale * delta` (metres; Meta-World's
action_scale is 1/100). The observed position is `state[state_position_dims]`; without a state the
supervisor integrates its own last target. With `action_mode="absolute"` the position dims are
targets in metres and the step is measured from the last target. Limits (per axis, metres):

- step (velocity): |step| <= max_step, and the action stays inside [action_low, action_high];
- step change (acceleration): |step_t - step_{t-1}| <= max_step_change;
- workspace: the target stays inside [workspace_low, workspace_high]. With an acceleration limit A
  the supervisor also brakes early: moving toward a wall at distance d it allows at most
  sqrt(2 A d) - A / 2 per step, exactly the speed from which it can still stop inside the box while
  obeying A. So when the robot follows the commands, all three limits hold at every step. When the
  observed state jumps (the robot did not follow), the limits can conflict; then workspace and
  velocity win over acceleration (counted as `limit_conflict`);
- gripper: gripper dims clipped to [gripper_low, gripper_high]; other dims to the action bounds.

Hold (NaN/Inf guard, missing action, watchdog) commands a step of zero through the same limits, i.e.
a controlled stop that decelerates within the acceleration limit, and keeps the last safe gripper
command (an object in the hand is not dropped). The watchdog counts from the last fresh chunk
(`infer` or `notify_chunk`): after `hold_after_ms` it holds, after `stop_after_ms` it latches the
e-stop. The e-stop (`estop()`) is the same controlled stop, latched until `release_estop()`
(`reset()`, called at each episode start, does not release it). Every
intervention is counted in `interventions` and logged (`vlaforge.safety`; the first of each kind at
WARNING, later ones at INFO) with the last 1000 kept in `events`. After construction and `reset()`
the robot is assumed at rest (previous step 0), so the first command also obeys the acceleration limit.

A robot loop (the supervisor both wraps the client, for the watchdog, and filters every command):

    safety = SafetySupervisor(PolicyClient(host, port), SafetyConfig())
    broker = AsyncChunkBroker(safety, refill_at=4, block=False)   # vlaforge.control.broker
    broker.reset()                                                 # each episode (server history too)
    while running:
        obs = robot.observe()
        robot.send(safety.filter(broker.act(obs), obs["observation.state"]))
"""

from __future__ import annotations

import collections
import copy
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from vlaforge.serve.limits import (  # SafetyConfig and braking_limit are also imported from here
    SafetyConfig,
    action_problem,
    as_rows,
    braking_limit,
    clip_to,
    parse_state,
)

logger = logging.getLogger("vlaforge.safety")


class SafetySupervisor:
    """Wrap `policy` (anything with `infer(obs) -> {"actions": ...}`, or None for `filter` only)."""

    def __init__(
        self,
        policy: Any = None,
        config: SafetyConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.config = config or SafetyConfig()
        self.clock = clock
        self.interventions: collections.Counter[str] = collections.Counter()
        self.events: collections.deque[tuple[float, str, str]] = collections.deque(maxlen=1000)
        self._chunk_len = 1
        self.stopped: str | None = None  # the e-stop reason while latched
        # [A] the last command sent; kept across reset() so a hold never opens a closed gripper.
        self._last_safe: np.ndarray | None = None
        self._bad_steps = 0  # non-finite / malformed actions in a row (filter)
        self._bad_rows = 0  # non-finite chunk rows in a row (infer, filter_chunk)
        self.reset(reset_policy=False)

    # ------------------------------------------------------------------ state
    def reset(self, reset_policy: bool = True) -> None:
        """Episode start: clear the motion history and the watchdog timer, reset the policy.

        A latched e-stop survives this (a broker resetting its policy must not release it): only
        `release_estop()` does."""
        cfg = self.config
        self._prev_step = np.zeros(len(cfg.position_dims))  # [P] last step, metres (at rest)
        start = cfg.initial_position
        self._target = None if start is None else np.asarray(start, np.float64)  # [P] dead-reckoned
        self._seen: np.ndarray | None = None  # [S] the last valid state observed
        self._stale = 0  # moving commands since the state last changed
        self._last_chunk = self.clock()
        if reset_policy and hasattr(self.policy, "reset"):
            self.policy.reset()

    def release_estop(self) -> None:
        """Release a latched e-stop (an explicit operator action); motion restarts from rest."""
        if self.stopped is not None:
            self._record("estop_released", self.stopped)
        self.stopped = None
        self._bad_steps = self._bad_rows = 0
        self.reset(reset_policy=False)

    def estop(self, reason: str = "manual") -> None:
        """Latch the e-stop: every later command is a controlled stop until `release_estop()`."""
        if self.stopped is None:
            self.stopped = reason
            self._record("estop", reason)

    def notify_chunk(self, now: float | None = None) -> None:
        """Tell the watchdog a fresh chunk arrived (done by `infer`)."""
        self._last_chunk = self.clock() if now is None else now

    # ------------------------------------------------------------------ openpi-style chunk path
    def infer(self, obs: dict) -> dict:
        """The wrapped policy's reply with `actions` passed through the limits (a preview, see module doc)."""
        try:
            result = dict(self.policy.infer(obs))
            chunk = np.asarray(result["actions"], dtype=np.float64)  # [H, A]
            if chunk.ndim != 2:
                raise ValueError(f"actions must be [H, A], got shape {chunk.shape}")
        except Exception as err:  # a policy failure must not reach the robot as an exception mid-motion
            self._record("policy_error", f"{type(err).__name__}: {err}")
            result, chunk = {}, np.full((self._chunk_len, self._width()), np.nan)
            failed = True
        else:
            failed = False
        state = obs.get("observation.state") if isinstance(obs, dict) else None
        result["actions"] = self.filter_chunk(chunk, state, fresh=not failed)
        return result

    def filter_chunk(
        self, chunk: Any, state: Any = None, *, commit: int = 0, fresh: bool = True
    ) -> np.ndarray:
        """A whole chunk [H, A] through the limits, from `state`, assuming the robot tracks each row.

        Every clipped or replaced row is counted (as `chunk_<kind>`), non-finite rows feed the
        e-stop count. The live per-step state is untouched unless `commit` = k > 0: then the motion
        state after row k (the rows the robot will execute) becomes the live one (server-side use,
        where no per-step `filter` runs). `fresh`: this chunk resets the watchdog."""
        rows = as_rows(chunk, self._chunk_len, self._width())  # [H, A]
        if fresh:
            self.notify_chunk()
            self._chunk_len = len(rows)
            self._count_bad_rows(rows)
        # A shallow copy: filter() only rebinds its fields, so the live per-step state is never
        # touched, even when a broker calls infer() from a background thread during filter().
        shadow = copy.copy(self)
        out, snapshot = [], None
        for i, row in enumerate(rows):
            out.append(shadow.filter(row, state, _preview=True, _observe=i == 0))
            state = None  # later rows integrate from the previous target (perfect tracking)
            if i + 1 == commit:
                snapshot = {k: getattr(shadow, k) for k in _MOTION}
        if snapshot is not None:
            self.__dict__.update(snapshot)
        return np.stack(out).astype(np.float32)  # [H, A]

    def _count_bad_rows(self, rows: np.ndarray) -> None:
        limit = self.config.estop_after_nonfinite
        with np.errstate(over="ignore", invalid="ignore"):
            finite = np.isfinite(rows).all(axis=1)  # [H]
        for ok in finite:
            self._bad_rows = 0 if ok else self._bad_rows + 1
            if limit is not None and self._bad_rows >= limit:
                self.estop(f"{self._bad_rows} non-finite policy outputs in a row")

    # ------------------------------------------------------------------ per-step path
    def filter(
        self,
        action: Any,
        state: Any = None,
        now: float | None = None,
        *,
        _preview: bool = False,
        _observe: bool = True,
    ) -> np.ndarray:
        """The command to send for this control step: finite and within every limit. Never raises:
        a malformed action or state is a counted hold."""
        with np.errstate(over="ignore", invalid="ignore"):  # 1e308 inputs are clipped, not warned about
            return self._filter(action, state, now, _preview, _observe)

    def _filter(self, action: Any, state: Any, now: float | None, preview: bool, observe: bool) -> np.ndarray:
        cfg = self.config
        hold = self._hold_reason(action, now, preview)
        position, state_hold = self._observe(state, counted=observe)
        hold = hold or state_hold
        a = np.zeros(self._width()) if hold else np.asarray(action, dtype=np.float64).copy()  # [A]
        if hold:
            self._record(hold, "holding" if hold != "estop_active" else str(self.stopped), preview)
            a[list(cfg.gripper_dims)] = self._last_gripper()
        a = self._bound_dims(a, preview)
        a = self._limit_position(a, hold, position, preview)
        self._last_safe = a
        return a.astype(np.float32)

    def _hold_reason(self, action: Any, now: float | None, preview: bool) -> str | None:
        if self.stopped is not None:
            return "estop_active"
        if not preview:
            age_ms = ((self.clock() if now is None else now) - self._last_chunk) * 1000
            if self.config.stop_after_ms is not None and age_ms > self.config.stop_after_ms:
                self.estop(f"watchdog: no fresh chunk for {age_ms:.0f} ms")
                return "estop_active"
            if self.config.hold_after_ms is not None and age_ms > self.config.hold_after_ms:
                return "watchdog_hold"
        if action is None:
            return "no_action"
        reason = action_problem(action, self._width())
        if not preview:
            self._count_bad_step(reason)
        return reason

    def _count_bad_step(self, reason: str | None) -> None:
        self._bad_steps = self._bad_steps + 1 if reason else 0
        limit = self.config.estop_after_nonfinite
        if limit is not None and self._bad_steps >= limit:
            self.estop(f"{self._bad_steps} non-finite or malformed policy outputs in a row")

    def _observe(self, state: Any, counted: bool) -> tuple[np.ndarray | None, str | None]:
        """(the position to limit from [P] or None, a hold reason or None) for this step's state.

        A fresh (changed) state is trusted; a missing or repeated one is replaced by the
        dead-reckoned target, and past `max_stale_steps` moving commands it holds."""
        cfg = self.config
        arr = parse_state(state, max(cfg.state_position_dims) + 1)
        if isinstance(arr, str):
            return self._target, "bad_state" if counted else None
        fresh = arr is not None and (self._seen is None or not np.array_equal(arr, self._seen))
        if fresh:
            self._seen, self._stale = arr, 0
            return arr[list(cfg.state_position_dims)], None
        if counted and np.any(self._prev_step != 0):
            self._stale += 1
        if self._target is None and arr is not None:  # the same state again right after reset
            return arr[list(cfg.state_position_dims)], None
        needs_position = cfg.workspace_low is not None or cfg.action_mode == "absolute"
        if self._target is None and needs_position:
            return None, "no_state"
        limit = cfg.max_stale_steps
        if limit is not None and self._stale > limit:
            return self._target, "stale_state"
        return self._target, None

    def _width(self) -> int:
        cfg = self.config
        if self._last_safe is not None:
            return len(self._last_safe)
        if cfg.action_low is not None:
            return len(cfg.action_low)
        return max((*cfg.position_dims, *cfg.gripper_dims)) + 1

    def _last_gripper(self) -> np.ndarray:
        if self._last_safe is not None:
            return self._last_safe[list(self.config.gripper_dims)]
        return np.full(len(self.config.gripper_dims), self.config.gripper_default)

    def _bound_dims(self, a: np.ndarray, preview: bool) -> np.ndarray:
        cfg = self.config
        b = a.copy()
        grip = list(cfg.gripper_dims)
        if cfg.action_low is not None:
            b = np.clip(b, cfg.action_low, cfg.action_high)
            other = np.ones(len(b), dtype=bool)
            other[grip] = False
            if not np.array_equal(a[other], b[other]):
                self._record("action_range", f"{a[other]} -> {b[other]}", preview)
        b[grip] = np.clip(b[grip], cfg.gripper_low, cfg.gripper_high)
        if not np.array_equal(a[grip], b[grip]):
            self._record("gripper_range", f"{a[grip]} -> {b[grip]}", preview)
        return b

    def _limit_position(
        self, a: np.ndarray, hold: str | None, position: np.ndarray | None, preview: bool
    ) -> np.ndarray:
        """Limit the position dims of `a` from `position` (observed, or dead-reckoned; None: unknown)."""
        cfg = self.config
        pos_dims = list(cfg.position_dims)
        ref = position if cfg.action_mode == "delta" or self._target is None else self._target  # [P]
        if hold or ref is None and cfg.action_mode == "absolute":
            wanted = np.zeros(len(pos_dims))  # [P] a controlled stop
        elif cfg.action_mode == "delta":
            wanted = a[pos_dims] * cfg.action_scale  # [P] metres
        else:
            wanted = a[pos_dims] - ref  # [P] metres
        lo, hi = self._step_bounds(pos_dims)
        lo, hi = self._workspace_bounds(lo, hi, ref, preview)
        if cfg.max_step_change is not None:
            change = cfg.max_step_change
            lo, hi, conflict = clip_to(self._prev_step - change, self._prev_step + change, lo, hi)
            if conflict:
                self._record("limit_conflict", "acceleration limit yields to workspace/velocity", preview)
        step = np.clip(wanted, lo, hi)  # [P]
        if not hold and not np.allclose(step, wanted, rtol=0, atol=1e-12):
            self._record("position_limit", f"step {np.round(wanted, 5)} -> {np.round(step, 5)} m", preview)
        self._prev_step = step
        self._target = None if ref is None else ref + step
        if cfg.action_mode == "delta":
            a[pos_dims] = step / cfg.action_scale
        else:  # absolute: the target itself; with no position known at all, the last safe command
            a[pos_dims] = self._target if self._target is not None else self._last_position(pos_dims)
        return a

    def _last_position(self, pos_dims: list[int]) -> np.ndarray:
        if self._last_safe is not None:
            return self._last_safe[pos_dims]
        low, high = self.config.workspace_low, self.config.workspace_high
        return (np.asarray(low) + np.asarray(high)) / 2 if low is not None else np.zeros(len(pos_dims))

    def _step_bounds(self, pos_dims: list[int]) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        big = np.full(len(pos_dims), np.inf)
        lo, hi = -big, big.copy()
        if cfg.max_step is not None:
            lo, hi = np.maximum(lo, -cfg.max_step), np.minimum(hi, cfg.max_step)
        if cfg.action_mode == "delta" and cfg.action_low is not None:
            lo = np.maximum(lo, np.asarray(cfg.action_low)[pos_dims] * cfg.action_scale)
            hi = np.minimum(hi, np.asarray(cfg.action_high)[pos_dims] * cfg.action_scale)
        return lo, hi

    def _workspace_bounds(self, lo, hi, position: np.ndarray | None, preview: bool):
        cfg = self.config
        if cfg.workspace_low is None or position is None:
            return lo, hi
        to_high = np.asarray(cfg.workspace_high) - position  # [P] metres to the upper wall
        to_low = position - np.asarray(cfg.workspace_low)  # [P]
        ws_hi = np.where(to_high >= 0, braking_limit(to_high, cfg.max_step_change), to_high)
        ws_lo = -np.where(to_low >= 0, braking_limit(to_low, cfg.max_step_change), to_low)
        new_lo, new_hi, conflict = clip_to(ws_lo, ws_hi, lo, hi)
        if conflict:
            self._record("outside_workspace", f"position {np.round(position, 4)} is outside the box", preview)
        return new_lo, new_hi

    def _record(self, kind: str, detail: str, preview: bool = False) -> None:
        """Count and log one intervention; in a chunk preview it is counted as `chunk_<kind>`."""
        kind = f"chunk_{kind}" if preview else kind
        self.interventions[kind] += 1
        self.events.append((self.clock(), kind, detail))
        level = logging.WARNING if self.interventions[kind] == 1 else logging.INFO
        logger.log(level, "safety intervention %s (#%d): %s", kind, self.interventions[kind], detail)


# The fields `filter` rebinds: what `filter_chunk(commit=k)` carries over from its shadow.


# The fields `filter` rebinds: what `filter_chunk(commit=k)` carries over from its shadow.
_MOTION = ("_prev_step", "_target", "_seen", "_stale", "_last_safe")
