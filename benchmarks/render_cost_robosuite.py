"""Where a robosuite step's time goes: physics + controller + expert, and one 128 px frame under
changed conditions (image size, mesh fraction, geoms off-screen, empty scene), on lift-panda.

    python benchmarks/render_cost_robosuite.py [--repeats 5] [--frames 60] [--seeds 6]

Each figure is the best of `--repeats` timings of `--frames` calls (ms per call), one pinned core:
the minimum is the least noisy estimate on a shared machine, and the frame conditions are timed in
interleaved rounds so that their ratios are measured side by side. `frame_ms` rows time `env.render()`
(`update_scene` + `mjr_render` + `mjr_readPixels`); the off-screen and empty rows re-render one
agentview scene whose geoms were moved far away (their vertices are still processed) or dropped.
`episode_steps_per_s_by_keep`: env steps/s of whole expert episodes (both cameras) per `mesh_keep`;
`episode_steps_per_s_by_setting`: the same per arm (Lift) for robosuite's own `env.step` against
`robosuite_step.ControlStep`, each drawing every geom or culling those outside the view (`SETTINGS`).
`agentview_frame_split_ms`: one agentview frame's scene update, draw calls (where llvmpipe does the
vertex work) and draw + read-back (which waits for its rasterizer).
`step_ms_*`: physics + controller + expert without rendering (seed 3's first 30 steps, resets not
timed), through ControlStep and through robosuite's own step; `step_ms_mujoco_substeps_only`: the 25
`mj_step1` + `mj_step2` of a step alone (controls held), MuJoCo's share.

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
from vlaforge.envs.robosuite import ARMS

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


def _env(keep: float | None = None, size: int = 128, **kwargs):
    from vlaforge.envs.robosuite import MESH_KEEP, RobosuiteEnv

    keep = MESH_KEEP if keep is None else keep
    env = RobosuiteEnv("lift-panda", cameras=CAMS, image_size=size, mesh_keep=keep, **kwargs)
    env.reset(3)
    for _ in range(20):  # arm over the cube: a typical frame
        env.step(env.expert_action(), render=False)
    return env


def episodes(settings: dict[str, dict], seeds: int, task: str = "lift-panda") -> dict[str, float]:
    """Env steps/s of whole expert episodes rendering both cameras, per `RobosuiteEnv` setting
    (label -> constructor arguments), seeds interleaved so that a slow spell hits every setting."""
    from vlaforge.envs.robosuite import RobosuiteEnv

    envs = {label: RobosuiteEnv(task, cameras=CAMS, **kwargs) for label, kwargs in settings.items()}
    steps, wall = dict.fromkeys(envs, 0), dict.fromkeys(envs, 0.0)
    for seed in range(1, seeds + 1):
        for label, env in envs.items():
            start, done = time.perf_counter(), False
            env.reset(seed)
            while not done:
                done = env.step(env.expert_action())[2]
                steps[label] += 1
            wall[label] += time.perf_counter() - start
    for env in envs.values():
        env.close()
    return {label: round(steps[label] / wall[label], 1) for label in envs}


#: The step and frame paths, oldest first (`episode_steps_per_s_by_setting`).
SETTINGS = {
    "robosuite env.step, every geom drawn": {"fast_control": False, "cull": False},
    "ControlStep, every geom drawn": {"fast_control": True, "cull": False},
    "ControlStep, frustum culling (= RobosuiteEnv)": {"fast_control": True, "cull": True},
}


def main() -> None:
    import mujoco
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--seeds", type=int, default=6, help="episodes per mesh fraction / setting and arm")
    args = parser.parse_args()
    core = sorted(os.sched_getaffinity(0))[-1]
    os.sched_setaffinity(0, [core])
    out: dict = {"machine": {"pinned_core": core, "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]},
                 "task": "lift-panda", "cameras": list(CAMS)}  # fmt: skip
    n, r = args.frames, args.repeats

    envs = {
        "step_ms_physics_controller_expert": _env(),
        "step_ms_robosuite_env_step": _env(fast_control=False),
    }
    best = dict.fromkeys(envs, float("inf"))
    for _ in range(r):  # interleaved rounds of the first 30 expert steps of seed 3 (resets not timed)
        for key, env in envs.items():
            env.reset(3, render=False)
            start = time.perf_counter()
            for _ in range(30):
                env.step(env.expert_action(), render=False)
            best[key] = min(best[key], (time.perf_counter() - start) / 30)
    out.update({key: round(ms * 1e3, 3) for key, ms in best.items()})
    env = envs["step_ms_physics_controller_expert"]  # MuJoCo alone: 25 substeps, controls held
    substeps = env._control.substeps

    def physics_only() -> None:
        for _ in range(substeps):
            mujoco.mj_step1(env.model, env.data)
            mujoco.mj_step2(env.model, env.data)

    env.reset(3, render=False)
    out["step_ms_mujoco_substeps_only"] = best_ms(physics_only, 30, r)
    for env in envs.values():
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

    keeps = {f"keep {k}": {"mesh_keep": k} for k in (0.15, 0.08, 0.05)}
    out["episode_steps_per_s_by_keep"] = episodes(keeps, args.seeds)
    print("episodes", out["episode_steps_per_s_by_keep"], flush=True)
    out["episode_steps_per_s_by_setting"] = {
        f"lift-{arm.lower()}": episodes(SETTINGS, args.seeds, f"lift-{arm.lower()}") for arm in ARMS
    }
    print("settings", out["episode_steps_per_s_by_setting"], flush=True)

    env = _env()
    renderer, cam = env._renderer, CAMS[0]
    renderer.update_scene(env.data, camera=cam, scene_option=env._vopt)
    ctx, rect, pixels = renderer._mjr_context, renderer._rect, np.empty((128, 128, 3), np.uint8)
    draw = lambda: mujoco.mjr_render(rect, renderer.scene, ctx)  # noqa: E731
    out["agentview_frame_split_ms"] = {  # the draw calls return before the rasterizer threads finish
        "mjv_updateScene": best_ms(lambda: renderer.update_scene(env.data, camera=cam, scene_option=env._vopt), n, r),
        "mjr_render": best_ms(draw, n, r),
        "mjr_render + mjr_readPixels": best_ms(lambda: (draw(), mujoco.mjr_readPixels(pixels, None, rect, ctx)), n, r),
    }  # fmt: skip
    print("split", out["agentview_frame_split_ms"], flush=True)
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
