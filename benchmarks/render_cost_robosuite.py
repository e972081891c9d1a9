"""Where a robosuite step's time goes: physics + controller + expert, and one 128 px frame under
changed conditions (image size, mesh fraction, geoms off-screen, empty scene), on lift-panda.

    python benchmarks/render_cost_robosuite.py [--repeats 5] [--frames 60] [--seeds 6]

Each figure is the best of `--repeats` timings of `--frames` calls (ms per call), one pinned core:
the minimum is the least noisy estimate on a shared machine, and the frame conditions are timed in
interleaved rounds so that their ratios are measured side by side. `frame_ms` rows time `env.render()`
(`update_scene` + `mjr_render` + `mjr_readPixels`); the off-screen and empty rows re-render one
agentview scene whose geoms were moved far away (their vertices are still processed) or dropped.
`episode_steps_per_s_by_keep`: env steps/s of whole expert episodes (both cameras) per `mesh_keep`.

Writes benchmarks/results/render_cost_robosuite.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import vlaforge  # noqa: F401  (sets MUJOCO_GL before mujoco is imported)

RESULTS = Path(__file__).resolve().parent / "results" / "render_cost_robosuite.json"
CAMS = ("agentview", "robot0_eye_in_hand")


def best_ms(fn: Callable[[], object], frames: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(frames):
            fn()
        best = min(best, (time.perf_counter() - start) / frames)
    return round(best * 1e3, 3)


def _env(keep: float | None = None, size: int = 128):
    from vlaforge.envs.robosuite import MESH_KEEP, RobosuiteEnv

    env = RobosuiteEnv(
        "lift-panda", cameras=CAMS, image_size=size, mesh_keep=MESH_KEEP if keep is None else keep
    )
    env.reset(3)
    for _ in range(20):  # arm over the cube: a typical frame
        env.step(env.expert_action(), render=False)
    return env


def episodes_by_keep(seeds: int, keeps: tuple[float, ...] = (0.15, 0.08, 0.05)) -> dict[str, float]:
    """Expert episodes of lift-panda rendering both cameras, per mesh fraction, seeds interleaved."""
    from vlaforge.envs.robosuite import RobosuiteEnv

    envs = {k: RobosuiteEnv("lift-panda", cameras=CAMS, mesh_keep=k) for k in keeps}
    steps, wall = dict.fromkeys(keeps, 0), dict.fromkeys(keeps, 0.0)
    for seed in range(1, seeds + 1):
        for k, env in envs.items():
            start, done = time.perf_counter(), False
            env.reset(seed)
            while not done:
                done = env.step(env.expert_action())[2]
                steps[k] += 1
            wall[k] += time.perf_counter() - start
    for env in envs.values():
        env.close()
    return {f"keep {k}": round(steps[k] / wall[k], 1) for k in keeps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--seeds", type=int, default=6, help="lift-panda episodes per mesh fraction")
    args = parser.parse_args()
    core = sorted(os.sched_getaffinity(0))[-1]
    os.sched_setaffinity(0, [core])
    out: dict = {"machine": {"pinned_core": core, "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]},
                 "task": "lift-panda", "cameras": list(CAMS)}  # fmt: skip
    n, r = args.frames, args.repeats

    env = _env()
    env.reset(3, render=False)

    def step() -> None:
        if env.step(env.expert_action(), render=False)[2]:
            env.reset(3, render=False)

    out["step_ms_physics_controller_expert"] = best_ms(step, n, r)
    env.close()

    conditions = [("128 px, keep 0.15 (= RobosuiteEnv)", None, 128), ("64 px", None, 64), ("256 px", None, 256),
                  ("keep 0.05", 0.05, 128), ("keep 0.4", 0.4, 128), ("keep 1.0 (full meshes)", 1.0, 128)]  # fmt: skip
    envs = {label: _env(keep, size) for label, keep, size in conditions}
    frame = {label: dict.fromkeys(CAMS, float("inf")) for label in envs}
    for _ in range(r):  # interleaved: every condition once per round, so a slow spell hits them all
        for label, env in envs.items():
            for c in CAMS:
                frame[label][c] = min(frame[label][c], best_ms(lambda c=c, e=env: e.render(c), n, 1))
    for label, env in envs.items():
        frame[label]["triangles"] = env.mesh_triangles[1]
        print(label, frame[label], flush=True)
        env.close()
    out["frame_ms"] = frame

    out["episode_steps_per_s_by_keep"] = episodes_by_keep(args.seeds)
    print("episodes", out["episode_steps_per_s_by_keep"], flush=True)

    env = _env()
    renderer, cam = env._renderer, CAMS[0]
    renderer.update_scene(env.data, camera=cam, scene_option=env._vopt)
    scene = renderer.scene
    geoms = scene.ngeom
    for i in range(geoms):  # every geom far outside the view: vertex work stays, no pixels
        scene.geoms[i].pos[:] = (50.0, 50.0, 50.0)
    out["frame_ms_all_geoms_offscreen"] = best_ms(lambda: renderer.render(), n, r)
    scene.ngeom = 0
    out["frame_ms_empty_scene"] = best_ms(lambda: renderer.render(), n, r)
    out["scene_geoms"] = geoms
    env.close()
    out["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
