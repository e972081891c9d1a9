"""robosuite collection speed (one worker, one core, 128 px, agentview + eye-in-hand), the render-setting
ablation, and the scripted experts' success per arm and task.

    python benchmarks/collect_fps_robosuite.py [--steps 60] [--seeds 20] [--image-size 128] [--skip-experts]
    python benchmarks/collect_fps_robosuite.py --experts-only   # re-measure the expert table alone
    python benchmarks/collect_fps_robosuite.py --experts-only --expert-tasks pick-place-can   # one task's rows

Figures (each per wall second and per CPU second of this process, `*_cpu`: on a shared, loaded
machine the CPU-second figure says what a dedicated core would do):

- `ablation`: env steps/s of lift-panda rendering both cameras, robosuite's own renderer first, then
  our `mujoco.Renderer` with the fast settings switched on one at a time (cumulative), then physics
  alone. The row marked `(= RobosuiteEnv)` is what collection and evaluation use.
- `mesh_fidelity`: per arm, the visual triangles before and after `MESH_KEEP` decimation and the
  mean absolute difference (0-255 levels) between full-mesh and decimated frames of the same states
  (seed 3, expert steps 0, 20, 40), per camera.
- `worker_frames_per_s`: recorded frames/s of expert attempts as a collection worker runs them
  (`run_attempt`: physics, expert, both cameras; video encoding is in the main process, not here),
  per arm on Lift (`worker_frames_per_s_by_arm`; its `lift-panda` entry is the headline figure).
- `expert_success`: successes / seeds per arm and task, seeds 0..N-1, physics only.

Writes benchmarks/results/collect_fps_robosuite.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import vlaforge  # noqa: F401  (sets MUJOCO_GL before mujoco is imported)
from collect_fps import Clock  # benchmarks/ is on the path when this script runs
from vlaforge.envs.robosuite import ARMS, MESH_KEEP, MESH_KEEP_NEAR
from vlaforge.keys import image_key

RESULTS = Path(__file__).resolve().parent / "results" / "collect_fps_robosuite.json"
CAMS = ("agentview", "robot0_eye_in_hand")


def rate(n: int, clock: Clock) -> dict[str, float]:
    return {"per_s": round(n / clock.wall, 1), "per_s_cpu": round(n / max(clock.cpu, 1e-9), 1)}


def _steps(env, n: int, render: bool, step=None) -> Clock:
    """`n` expert steps (restarting episodes when they end), timed."""
    step = step or (lambda a: env.step(a, render=render))
    env.reset(0, render=render)
    with Clock() as clock:
        for _ in range(n):
            _, _, done, _ = step(env.expert_action())
            if done:
                env.reset(1, render=render)
    return clock


def robosuite_default(n: int, size: int) -> dict:
    """robosuite's own offscreen renderer and camera observables, its defaults otherwise."""
    import numpy as np
    from robosuite.controllers import load_composite_controller_config

    from vlaforge.envs.robosuite import _quiet_import

    suite = _quiet_import()
    env = suite.make(
        "Lift", robots="Panda", controller_configs=load_composite_controller_config(controller="BASIC", robot="Panda"),
        has_renderer=False, has_offscreen_renderer=True, use_camera_obs=True, camera_names=list(CAMS),
        camera_heights=size, camera_widths=size, hard_reset=False, control_freq=20, ignore_done=True, seed=0,
    )  # fmt: skip
    env.reset()
    with Clock() as clock:
        for _ in range(n):
            env.step(np.zeros(7))
    env.close()
    return rate(n, clock)


def ablation(n: int, size: int) -> list[dict]:
    import mujoco

    from vlaforge.envs.robosuite import RobosuiteEnv

    rows = [{"setting": "robosuite default renderer (camera observables)", **robosuite_default(n, size)}]
    env = RobosuiteEnv(
        "lift-panda", cameras=CAMS, image_size=size, mesh_keep=1.0, fast_control=False, cull=False
    )
    quality = env.model.vis.quality
    flags = mujoco.mjtRndFlag
    steps = [
        ("mujoco.Renderer, MuJoCo defaults", {}),
        ("+ no shadows (shadowsize 0, mjRND_SHADOW off)", {"shadow": True}),
        ("+ no multisampling (offsamples 0)", {"shadow": True, "msaa": True}),
        ("+ no reflections (mjRND_REFLECTION off)", {"shadow": True, "msaa": True, "refl": True}),
        ("+ no skybox (mjRND_SKYBOX off)", {"shadow": True, "msaa": True, "refl": True, "sky": True}),
        ("+ collision geoms hidden", {"shadow": True, "msaa": True, "refl": True, "sky": True, "geoms": True}),
    ]  # fmt: skip
    try:
        for name, on in steps:
            env._renderer.close()
            quality.shadowsize = 0 if on.get("shadow") else 4096
            quality.offsamples = 0 if on.get("msaa") else 4
            env._renderer = mujoco.Renderer(env.model, height=size, width=size)
            scene = env._renderer.scene
            scene.flags[flags.mjRND_SHADOW] = 0 if on.get("shadow") else 1
            scene.flags[flags.mjRND_REFLECTION] = 0 if on.get("refl") else 1
            scene.flags[flags.mjRND_SKYBOX] = 0 if on.get("sky") else 1
            env._vopt = mujoco.MjvOption()
            env._vopt.geomgroup[0] = 0 if on.get("geoms") else 1
            rows.append({"setting": name, **rate(n, _steps(env, n, render=True))})
            print(rows[-1], flush=True)
        env._vopt.geomgroup[0], env._vopt.geomgroup[1] = 1, 0  # not used: the robot turns into its hulls
        rows.append(
            {
                "setting": "(not used) collision meshes instead of visual meshes",
                **rate(n, _steps(env, n, render=True)),
            }
        )
        env._vopt.geomgroup[0], env._vopt.geomgroup[1] = 0, 1
        rows.append(
            {"setting": "physics + expert only (no rendering), robosuite's env.step",
             **rate(n, _steps(env, n, render=False))}
        )  # fmt: skip
    finally:
        env.close()
    for fast, cull in ((False, False), (True, False), (True, True)):
        env = RobosuiteEnv("lift-panda", cameras=CAMS, image_size=size, fast_control=fast, cull=cull)
        try:
            before, after = env.mesh_triangles
            name = {
                (False, False): f"+ visual meshes decimated to {MESH_KEEP:.0%}, the wrist camera's hand "
                f"to {MESH_KEEP_NEAR:.0%} ({before:,} -> {after:,} triangles)",
                (True, False): "+ robosuite_step.ControlStep between policy steps (bitwise the same states)",
                (True, True): "+ geoms outside each camera's frustum left out (the same image) (= RobosuiteEnv)",
            }  # fmt: skip
            at = next(i for i, row in enumerate(rows) if row["setting"].startswith("(not used)"))
            rows.insert(at, {"setting": name[fast, cull], **rate(n, _steps(env, n, render=True))})
            print(rows[at], flush=True)
            if fast and not cull:
                rows.append(
                    {"setting": "physics + expert only (no rendering), ControlStep",
                     **rate(n, _steps(env, n, render=False))}
                )  # fmt: skip
        finally:
            env.close()
    return rows


def mesh_fidelity(size: int, steps: tuple[int, ...] = (0, 20, 40)) -> dict:
    """Per arm: triangles before/after decimation and the mean |full - decimated| frame difference."""
    import numpy as np

    from vlaforge.envs.robosuite import RobosuiteEnv

    def frames(task: str, keep: float) -> tuple[list[list[np.ndarray]], tuple[int, int]]:
        env = RobosuiteEnv(task, cameras=CAMS, image_size=size, mesh_keep=keep)
        obs, out = env.reset(3), []
        for i in range(max(steps) + 1):
            if i in steps:
                out.append([obs[image_key(c)].astype(np.int16) for c in CAMS])  # [H, W, 3] each
            obs, _, done, _ = env.step(env.expert_action())
            if done:
                break
        env.close()
        return out, env.mesh_triangles

    table = {}
    for arm in ARMS:
        task = f"lift-{arm.lower()}"
        (full, _), (thin, (before, after)) = frames(task, 1.0), frames(task, MESH_KEEP)
        diff = {c: round(float(np.mean([np.abs(a[i] - b[i]).mean() for a, b in zip(full, thin, strict=True)])), 2)
                for i, c in enumerate(CAMS)}  # fmt: skip
        table[task] = {"triangles": before, "triangles_kept": after, "mean_abs_diff": diff}
        print(task, table[task], flush=True)
    return table


def worker_frames(size: int, seeds: int, task: str = "lift-panda") -> dict:
    from vlaforge.envs.rollout import AttemptSpec, run_attempt

    frames = 0
    run_attempt(AttemptSpec(task, 0, CAMS, size, 0, 400, "robosuite"))  # builds the env: not timed
    with Clock() as clock:
        for seed in range(1, seeds + 1):
            out = run_attempt(AttemptSpec(task, seed, CAMS, size, 10, 400, "robosuite"))
            frames += len(out.frames["action"]) if out.success else 0
    return {"frames": frames, **rate(frames, clock)}


def expert_success(seeds: int, tasks: str = "all") -> dict:
    from vlaforge.envs.registry import get_simulator
    from vlaforge.envs.robosuite import RobosuiteEnv
    from vlaforge.envs.robosuite_expert import run_expert

    table: dict[str, dict] = {}
    for task in get_simulator("robosuite").resolve_tasks(tasks):  # registered (task, arm) pairs
        env = RobosuiteEnv(task, image_size=16)
        runs = [run_expert(env, seed) for seed in range(seeds)]
        wins, steps = sum(ok for ok, _ in runs), [n for _, n in runs]
        env.close()
        table[task] = {"successes": wins, "seeds": seeds, "rate": wins / seeds,
                       "mean_steps": round(sum(steps) / len(steps), 1)}  # fmt: skip
        print(task, table[task], flush=True)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60, help="env steps per ablation row")
    parser.add_argument("--seeds", type=int, default=20, help="seeds per arm and task for the experts")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--skip-experts", action="store_true")
    parser.add_argument(
        "--experts-only",
        action="store_true",
        help="measure expert_success alone; keep the JSON's other figures",
    )
    parser.add_argument(
        "--expert-tasks",
        default="all",
        help="with --experts-only: these tasks or suites (e.g. pick-place-can)",
    )
    args = parser.parse_args()
    if args.experts_only:  # the experts run physics only: their table does not depend on rendering
        out = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        out["expert_success"] = {
            **out.get("expert_success", {}),
            **expert_success(args.seeds, args.expert_tasks),
        }
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(out, indent=2) + "\n")
        return
    core = sorted(os.sched_getaffinity(0))[-1]
    os.sched_setaffinity(0, [core])
    load = os.getloadavg()
    out: dict = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores_visible": os.cpu_count(),
                    "pinned_core": core, "loadavg_at_start": [round(x, 2) for x in load],
                    "MUJOCO_GL": os.environ.get("MUJOCO_GL"), "EGL_PLATFORM": os.environ.get("EGL_PLATFORM")},
        "image_size": args.image_size, "cameras": list(CAMS), "task": "lift-panda",
    }  # fmt: skip
    out["ablation"] = ablation(args.steps, args.image_size)
    out["mesh_keep"] = MESH_KEEP
    out["mesh_fidelity"] = mesh_fidelity(args.image_size)
    by_arm = {}
    for arm in ARMS:
        task = f"lift-{arm.lower()}"
        by_arm[task] = worker_frames(args.image_size, 3, task)
        print("worker", task, by_arm[task], flush=True)
    out["worker_frames_per_s"] = by_arm["lift-panda"]  # the headline figure
    out["worker_frames_per_s_by_arm"] = by_arm
    if not args.skip_experts:
        out["expert_success"] = expert_success(args.seeds)
    out["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    if RESULTS.exists() and args.skip_experts:  # keep an earlier expert table
        old = json.loads(RESULTS.read_text())
        if "expert_success" in old:
            out["expert_success"] = old["expert_success"]
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
