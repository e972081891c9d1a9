"""Success metrics of an evaluation, computed the way published Meta-World tables compute them.

- An episode succeeds if the environment reports success at any step (we stop it there); an episode
  whose policy call failed (a remote server's error or timeout) is a failure, with its reason.
- A task's success rate is its successes over its finished episodes.
- A difficulty group's rate is the plain mean of its tasks' rates.
- The headline MT50 average (SmolVLA / TinyVLA tables) is the plain mean of the group means over the
  groups present; we also give the plain mean over tasks, which differs when groups are unequal in size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

GROUP_ORDER = ("easy", "medium", "hard", "very_hard")


@dataclass(frozen=True)
class EpisodeResult:
    """One finished evaluation episode."""

    task: str
    episode: int  # index of the episode within its task (0 .. episodes_per_task - 1)
    seed: int  # the environment seed of this episode
    success: bool  # success reached at any step
    length: int  # environment steps taken (the step of first success, or the step limit)
    retries: int = 0  # how often this episode was restarted after a worker crash
    video: str | None = None  # path of its mp4, relative to the output directory
    error: str | None = None  # why the policy failed this episode (a remote server's error), else None
    jerk: float | None = None  # mean |third difference| of the commanded positions (runner.smoothness)
    boundary_jerk: float | None = None  # the same over the windows around chunk switches

    def to_dict(self) -> dict:
        return asdict(self)


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def task_metrics(results: Sequence[EpisodeResult]) -> dict:
    """Success rate, counts, mean length, seeds and retries of one task's episodes."""
    ordered = sorted(results, key=lambda r: r.episode)
    return {
        "success_rate": _mean([float(r.success) for r in ordered]),
        "successes": int(sum(r.success for r in ordered)),
        "episodes": len(ordered),
        "mean_length": _mean([r.length for r in ordered]),
        "seeds": [r.seed for r in ordered],
        "retries": int(sum(r.retries for r in ordered)),
        "videos": [r.video for r in ordered if r.video],
        "errors": int(sum(r.error is not None for r in ordered)),
        "mean_jerk": _mean([r.jerk for r in ordered if r.jerk is not None]),
        "mean_boundary_jerk": _mean([r.boundary_jerk for r in ordered if r.boundary_jerk is not None]),
    }


def summarize(
    results: Sequence[EpisodeResult], tasks: Sequence[str], difficulty_of: Callable[[str], str | None]
) -> dict:
    """Per-task, per-group and overall metrics; tasks with no finished episode are listed with None."""
    per_task = {t: task_metrics([r for r in results if r.task == t]) for t in tasks}
    groups: dict[str, list[float]] = {}
    for task, m in per_task.items():
        group = difficulty_of(task) or "other"
        if m["success_rate"] is not None:
            groups.setdefault(group, []).append(m["success_rate"])
        per_task[task]["difficulty"] = group
    order = [g for g in GROUP_ORDER if g in groups] + sorted(g for g in groups if g not in GROUP_ORDER)
    per_group = {g: {"success_rate": _mean(groups[g]), "tasks": len(groups[g])} for g in order}
    rates = [m["success_rate"] for m in per_task.values() if m["success_rate"] is not None]
    overall = {
        "success_rate": _mean([per_group[g]["success_rate"] for g in order]),
        "success_rate_task_mean": _mean(rates),
        "groups": order,
        "episodes": len(results),
        "successes": int(sum(r.success for r in results)),
    }
    return {"per_task": per_task, "per_group": per_group, "overall": overall}


def smoothness(actions: list, switches: list, sim: Any) -> tuple[float | None, float | None]:
    """Mean |third difference| of the commanded positions over the episode, and over the windows that
    contain a chunk switch. Positions: the integrated actions under delta control, the actions under
    absolute control; gripper dimensions are left out (their effort is not a position)."""
    if len(actions) < 4:
        return None, None
    dims = [i for i, n in enumerate(sim.action.names) if "gripper" not in n.lower()] or list(
        range(sim.action.dim)
    )
    a = np.asarray(actions, dtype=np.float64)[:, dims]  # [T, D]
    pos = np.cumsum(a, axis=0) if "delta" in sim.action.control_mode.lower() else a
    jerk = np.abs(np.diff(pos, n=3, axis=0)).mean(axis=1)  # [T - 3]: window t .. t+3
    at = sorted({w for s in switches for w in range(s - 3, s + 1) if 0 <= w < len(jerk)})
    return float(jerk.mean()), (float(jerk[at].mean()) if at else None)
