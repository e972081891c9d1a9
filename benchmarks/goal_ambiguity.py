"""How well can one camera tell where a floating goal is? A geometric bound for Meta-World's goal tasks.

A goal marker seen by one fixed camera pins down its ray from the camera, not its depth along it.
For reach and pick-place the goal is drawn from a 3-D box (20 x 10 x 25 cm), so every pixel of the
marker is consistent with a segment of goals; push's goal lies on the table (1 cm of height), so its
ray meets the box in one point. This script measures, for goals drawn as the task's reset draws them
(`heldout`: uniform in the reset space, rejecting an object-goal distance under 15 cm in xy, as
reach/push/pick-place do), how long that segment is and how often a policy that knows the ray
exactly, and the prior over goals, could land within the success radius (Meta-World's: 5 cm for
reach and push, 7 cm for pick-place) with one guess:

- `median_guess`: the goal's posterior median along its ray (roughly where a regression policy
  trained with an L1 loss on demonstrations that end at the goal heads when the image fixes only
  the ray; its loss is on actions, so only roughly);
- `best_guess`: the point with the most posterior mass within the radius (the best any single target
  can do).

The posterior along a ray is the prior's density there times t^2 (a pixel's cone widens with depth t).
Both are upper bounds for a one-frame, one-target policy: they assume the marker's 2-D position is
read exactly and ignore cues a policy could in principle use (the marker's apparent size, which
changes along a segment by the ratio of its far and near distances, reported; the hand occluding
the marker or being occluded by it; sweeping the hand along the ray, which the demonstrations never
do). Under the `published` protocol the 50
fixed placements are what must be told apart: the script counts those with another placement within
1 px of it at the given image size but farther than the radius in space.

    python benchmarks/goal_ambiguity.py [--tasks reach-v3,pick-place-v3,push-v3] [--samples 4000]

Writes benchmarks/results/goal_ambiguity.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "goal_ambiguity.json"
MIN_OBJECT_GOAL_XY = 0.15  # m: reach/push/pick-place redraw a placement whose object and goal are closer
#: Meta-World's success radius per task (reach: hand to goal; push, pick-place: object to goal), m.
SUCCESS_RADIUS = {"reach-v3": 0.05, "push-v3": 0.05, "pick-place-v3": 0.07}


def box_segment(
    origin: np.ndarray, direction: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[float, float]:
    """[t0, t1] of the ray origin + t * direction (unit) inside the box [lo, hi] (slab method; t0 > t1:
    the ray misses it). A flat box needs a little thickness (`ray_bound` pads it)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        a, b = (lo - origin) / direction, (hi - origin) / direction  # [3] each
    t0 = float(np.max(np.minimum(a, b)))
    t1 = float(np.min(np.maximum(a, b)))
    return t0, t1


class AcceptWeight:
    """The chance that a goal at xy survives the reset's redraw rule (object and goal >= 15 cm apart
    in xy), over objects uniform in their reset box: tabulated on a 2 mm grid of the goal box, looked
    up at the nearest node."""

    def __init__(self, low: np.ndarray, high: np.ndarray, rng: np.random.Generator, step: float = 0.002):
        obj = rng.uniform(low[:2], high[:2], size=(4000, 2))  # [M, 2]
        self.lo, self.step = low[3:5], step
        nx, ny = (np.ceil((high[3:5] - low[3:5]) / step) + 1).astype(int)
        gx, gy = np.meshgrid(low[3] + step * np.arange(nx), low[4] + step * np.arange(ny), indexing="ij")
        grid = np.stack([gx.ravel(), gy.ravel()], 1)  # [nx * ny, 2]
        dist = np.linalg.norm(grid[:, None, :] - obj[None, :, :], axis=-1)  # [nx * ny, M]
        self.table = (dist >= MIN_OBJECT_GOAL_XY).mean(1).reshape(nx, ny)  # [nx, ny]

    def __call__(self, xy: np.ndarray) -> np.ndarray:
        """[N] weights for goal positions `xy` [N, 2] (clamped onto the grid)."""
        idx = np.rint((xy - self.lo) / self.step).astype(int)  # [N, 2]
        idx = np.clip(idx, 0, np.array(self.table.shape) - 1)
        return self.table[idx[:, 0], idx[:, 1]]


def draw_goals(low: np.ndarray, high: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """[n, 3] goals as the reset draws them: rand_vec = (object xyz, goal xyz) uniform in [low, high],
    redrawn while object and goal are closer than 15 cm in xy."""
    goals = []
    while len(goals) < n:
        vec = rng.uniform(low, high, size=(4 * n, 6))  # [4n, 6]
        ok = np.linalg.norm(vec[:, :2] - vec[:, 3:5], axis=1) >= MIN_OBJECT_GOAL_XY
        goals.extend(vec[ok, 3:])
    return np.asarray(goals[:n])


def ray_bound(goal, camera, lo, hi, weight: AcceptWeight, radius: float, points: int = 400) -> dict:
    """The segment of goals sharing `goal`'s ray and the two guesses' outcomes for this goal."""
    direction = (goal - camera) / np.linalg.norm(goal - camera)  # [3]
    t_goal = float(np.linalg.norm(goal - camera))
    pad = np.where(hi - lo < 1e-9, 1e-6, 0.0)  # a flat axis: the goal's own plane
    t0, t1 = box_segment(camera, direction, lo - pad, hi + pad)
    t0, t1 = min(t0, t_goal), max(t1, t_goal)
    if t1 - t0 < 1e-6:
        return {"length": 0.0, "size_ratio": 1.0, "median_hit": True, "best_hit": True}
    t = np.linspace(t0, t1, points)  # [P]
    along = camera[None, :] + t[:, None] * direction[None, :]  # [P, 3]
    density = t**2 * weight(along[:, :2])  # [P] posterior along the ray, unnormalised
    cdf = np.concatenate([[0.0], np.cumsum(density)]) / density.sum()  # [P + 1]
    t_median = float(t[min(np.searchsorted(cdf, 0.5) - 1, points - 1)])
    window = (
        cdf[np.searchsorted(t, t + radius)] - cdf[np.searchsorted(t, t - radius)]
    )  # [P] mass within the radius
    t_best = float(t[int(np.argmax(window))])
    return {
        "length": t1 - t0,
        "size_ratio": t1 / t0,  # the marker's apparent size at the segment's near end over its far end
        "median_hit": abs(t_goal - t_median) < radius,
        "best_hit": abs(t_goal - t_best) < radius,
    }


def confusable_placements(
    placements: np.ndarray, camera: np.ndarray, fovy_deg: float, size: int, radius: float
) -> dict:
    """Of the fixed placements' goals [K, 3], how many have another within 1 px in the image (a
    pinhole of `fovy_deg` at `size` px) but farther than `radius` in space (one frame cannot tell
    them apart and one guess cannot serve both), and the smallest pixel distance between two."""
    rays = placements - camera[None, :]
    rays /= np.linalg.norm(rays, axis=1, keepdims=True)  # [K, 3]
    angle = np.arccos(np.clip(rays @ rays.T, -1.0, 1.0))  # [K, K]
    pixels = np.tan(angle) * size / 2 / np.tan(np.deg2rad(fovy_deg) / 2)  # [K, K]
    np.fill_diagonal(pixels, np.inf)
    apart = np.linalg.norm(placements[:, None] - placements[None, :], axis=-1) > radius  # [K, K]
    return {
        "placements": len(placements),
        "confusable": int(((pixels < 1.0) & apart).any(1).sum()),
        "min_pixel_separation": round(float(pixels.min()), 2),
    }


def task_bound(task: str, samples: int, radius: float, size: int, seed: int) -> dict:
    import mujoco

    from vlaforge.envs.metaworld import MetaWorldEnv, fixed_placements

    env = MetaWorldEnv(task, cameras=("corner2",), image_size=16)
    try:
        env.reset(0, render=False)
        model, data = env._env.model, env._env.data
        space = env._env._random_reset_space
        cam = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "corner2")
        camera, fovy = data.cam_xpos[cam].copy(), float(model.cam_fovy[cam])
    finally:
        env.close()
    low, high = np.asarray(space.low, float), np.asarray(space.high, float)
    if low.size != 6:
        raise SystemExit(
            f"{task}: a reset space of (object xyz, goal xyz) is expected, not {low.size} values"
        )
    rng = np.random.default_rng(seed)
    weight = AcceptWeight(low, high, rng)
    goals = draw_goals(low, high, samples, rng)  # [N, 3]
    rows = [ray_bound(g, camera, low[3:], high[3:], weight, radius) for g in goals]
    lengths = np.array([r["length"] for r in rows])
    placements = np.array([p[3:6] for p in fixed_placements(task)])  # [50, 3]
    return {
        "goal_box_m": [low[3:].tolist(), high[3:].tolist()],
        "camera": {"name": "corner2", "pos": camera.round(4).tolist(), "fovy_deg": fovy},
        "samples": samples,
        "segment_length_m": {
            "median": round(float(np.median(lengths)), 4),
            "p90": round(float(np.quantile(lengths, 0.9)), 4),
        },
        "marker_size_near_over_far": round(float(np.median([r["size_ratio"] for r in rows])), 3),
        "median_guess_success_bound": round(float(np.mean([r["median_hit"] for r in rows])), 3),
        "best_guess_success_bound": round(float(np.mean([r["best_hit"] for r in rows])), 3),
        "published": confusable_placements(placements, camera, fovy, size, radius),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="reach-v3,pick-place-v3,push-v3")
    parser.add_argument("--samples", type=int, default=4000, help="goals drawn per task")
    parser.add_argument("--radius", type=float, help="success radius in m (default: the task's own)")
    parser.add_argument(
        "--image-size", type=int, default=96, help="for the published placements' pixel separation"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    from vlaforge.errors import VlaforgeError

    tasks = {}
    for task in args.tasks.split(","):
        radius = args.radius if args.radius is not None else SUCCESS_RADIUS.get(task)
        if radius is None:
            raise SystemExit(f"{task}: no success radius known; pass --radius")
        try:
            tasks[task] = dict(
                task_bound(task, args.samples, radius, args.image_size, args.seed), radius_m=radius
            )
        except VlaforgeError as err:
            print(f"goal_ambiguity: {err}", file=sys.stderr)
            return 2
        print(task, json.dumps(tasks[task]))
    result = {
        "command": "python benchmarks/goal_ambiguity.py",
        "image_size": args.image_size,
        "conventions": "bounds for a policy that reads the goal's ray exactly and aims at one point; see the docstring",
        "tasks": tasks,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
