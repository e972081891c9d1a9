"""The safety supervisor's limits (`SafetyConfig`) and its pure helpers: the braking limit, interval
clipping and the parsing of untrusted actions and states. `vlaforge.serve.safety` re-exports them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np


@dataclass(frozen=True)
class SafetyConfig:
    """Limits of `SafetySupervisor` (defaults: Meta-World's Sawyer, 4-d delta actions)."""

    # Action dims that command the end-effector position (x, y, z).
    position_dims: tuple[int, ...] = (0, 1, 2)
    # Where the observed end-effector position sits in `observation.state` (Meta-World: hand xyz = 0:3).
    state_position_dims: tuple[int, ...] = (0, 1, 2)
    # "delta": position dims are steps in action units (target = position + action_scale * a);
    # "absolute": position dims are targets in metres.
    action_mode: Literal["delta", "absolute"] = "delta"
    # Metres per action unit in delta mode (Meta-World: 1/100).
    action_scale: float = 0.01
    # Per-dim action bounds, applied to every dim (Meta-World's action space is [-1, 1]^4); None = none.
    action_low: tuple[float, ...] | None = (-1.0, -1.0, -1.0, -1.0)
    action_high: tuple[float, ...] | None = (1.0, 1.0, 1.0, 1.0)
    # Box the target position must stay in, metres (most Meta-World tasks' hand_low / hand_high); None = none.
    workspace_low: tuple[float, ...] | None = (-0.5, 0.40, 0.05)
    workspace_high: tuple[float, ...] | None = (0.5, 1.0, 0.5)
    # Largest position step per control step and axis, metres (Meta-World's own maximum: 0.01); None = none.
    max_step: float | None = 0.01
    # Largest change of that step between consecutive control steps, metres; None = no acceleration limit.
    max_step_change: float | None = 0.01
    # Gripper dims and their range (Meta-World: dim 3, -1 open .. +1 closed).
    gripper_dims: tuple[int, ...] = (3,)
    gripper_low: float = -1.0
    gripper_high: float = 1.0
    # Gripper command used by a hold before any safe command was seen.
    gripper_default: float = -1.0
    # Watchdog: no fresh chunk for this long -> hold; None = off.
    hold_after_ms: float | None = 500.0
    # Watchdog: no fresh chunk for this long -> latch the e-stop; None = never.
    stop_after_ms: float | None = 2000.0
    # Where the end effector is assumed to be before any state is observed (metres, one value per
    # position dim): dead reckoning starts there. None: with a workspace box (or absolute actions),
    # hold until the first valid state (`no_state`), since the box cannot be enforced from nowhere.
    initial_position: tuple[float, ...] | None = None
    # Hold (`stale_state`) once the state has been missing or unchanged for more than this many
    # consecutive moving commands (in between, the target is dead-reckoned from our own commands
    # against the box); the hold lasts until a fresh (changed) state or `reset()`. None = never.
    max_stale_steps: int | None = 40
    # Latch the e-stop after this many non-finite or malformed policy outputs in a row, counted
    # separately over `filter` calls and over chunk rows (`infer`, `filter_chunk`). None = never.
    estop_after_nonfinite: int | None = 10

    def __post_init__(self) -> None:
        """Inconsistent limits are refused here, not discovered mid-motion inside `filter`."""
        from vlaforge.errors import VlaforgeError

        def pair(low, high, name: str, size: int | None) -> None:
            if (low is None) != (high is None):
                raise VlaforgeError(f"SafetyConfig: {name}_low and {name}_high must be set together")
            if low is None:
                return
            if len(low) != len(high) or (size is not None and len(low) != size):
                raise VlaforgeError(
                    f"SafetyConfig: {name}_low/{name}_high need {size or len(low)} values each"
                )
            if any(lo > hi for lo, hi in zip(low, high, strict=True)):
                raise VlaforgeError(f"SafetyConfig: {name}_low must not exceed {name}_high")

        if not self.position_dims or len(self.position_dims) != len(self.state_position_dims):
            raise VlaforgeError(
                "SafetyConfig: position_dims and state_position_dims must be non-empty and equally long"
            )
        if set(self.position_dims) & set(self.gripper_dims):
            raise VlaforgeError("SafetyConfig: a dim cannot be both a position and a gripper dim")
        pair(self.workspace_low, self.workspace_high, "workspace", len(self.position_dims))
        pair(self.action_low, self.action_high, "action", None)
        if self.gripper_low > self.gripper_high:
            raise VlaforgeError("SafetyConfig: gripper_low must not exceed gripper_high")
        if self.initial_position is not None and len(self.initial_position) != len(self.position_dims):
            raise VlaforgeError(f"SafetyConfig: initial_position needs {len(self.position_dims)} values")
        for name in ("max_stale_steps", "estop_after_nonfinite"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise VlaforgeError(f"SafetyConfig: {name} must be >= 1 (or None)")
        if self.action_scale <= 0:
            raise VlaforgeError("SafetyConfig: action_scale must be > 0")


def braking_limit(distance: np.ndarray, max_change: float | None) -> np.ndarray:
    """Largest step toward a wall `distance` away (>= 0) from which a stop within it is still possible.

    Decelerating by A per step from v travels at most (v + A/2)^2 / (2A) - A/8 + ... <= d, which gives
    v <= sqrt(2 A d) - A/2 (clamped at 0); with no acceleration limit the target may reach the wall.
    """
    if not max_change:
        return distance
    return np.maximum(0.0, np.sqrt(2.0 * max_change * np.maximum(distance, 0.0)) - max_change / 2.0)


def clip_to(interval_lo: np.ndarray, interval_hi: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """Intersect [lo, hi] with a lower-priority interval; where they do not meet keep the nearest point."""
    new_lo, new_hi = np.maximum(lo, interval_lo), np.minimum(hi, interval_hi)
    conflict = new_lo > new_hi
    nearest = np.clip(np.where(interval_lo > hi, hi, lo), lo, hi)
    real = (new_lo - new_hi) > 1e-9  # a nanometre: float32 rounding at a tight (feasible) braking step
    return np.where(conflict, nearest, new_lo), np.where(conflict, nearest, new_hi), bool(real.any())


def action_problem(action: Any, width: int) -> str | None:
    """Why `action` cannot be executed (`bad_action`, `bad_shape`, `nonfinite`), or None."""
    try:
        arr = np.asarray(action, dtype=np.float64)
    except Exception:  # strings, dicts, Python ints beyond float range (OverflowError), ...
        return "bad_action"
    if arr.shape != (width,):
        return "bad_shape"
    return None if np.isfinite(arr).all() else "nonfinite"


def as_rows(chunk: Any, default_len: int, width: int) -> np.ndarray:
    """`chunk` as float rows [H, A]; a row that is not `width` numbers becomes NaN (a counted hold),
    a chunk that is not a sequence of rows becomes `default_len` NaN rows."""
    try:
        rows = np.asarray(chunk, dtype=np.float64)
        if rows.ndim == 2 and len(rows):
            return rows
    except Exception:  # ragged, or Python ints beyond float range: row by row
        pass
    try:
        return np.stack([_row(r, width) for r in chunk]) if len(chunk) else _nan_rows(default_len, width)
    except Exception:
        return _nan_rows(default_len, width)


def _row(row: Any, width: int) -> np.ndarray:
    return (
        np.asarray(row, dtype=np.float64)
        if action_problem(row, width) in (None, "nonfinite")
        else np.full(width, np.nan)
    )


def _nan_rows(length: int, width: int) -> np.ndarray:
    return np.full((length, width), np.nan)


def parse_state(state: Any, min_len: int) -> np.ndarray | None | str:
    """The current state [S] (the last row of a history), None if absent, or "bad" if malformed
    (not numbers, not finite, shorter than the position dims need)."""
    if state is None:
        return None
    try:
        arr = np.asarray(state, dtype=np.float64)
    except Exception:
        return "bad"
    arr = arr[-1] if arr.ndim == 2 and len(arr) else arr
    if arr.ndim != 1 or len(arr) < min_len or not np.isfinite(arr).all():
        return "bad"
    return arr.copy()
