"""ALOHA collection throughput of one worker on one core (128 px, `top`; goal >= 100 frames/s) and
the scripted expert's success rate per task.

    python benchmarks/collect_fps_aloha.py [--image-size 128] [--seeds 20] [--fps-seeds 2] [--cores 1]
    python benchmarks/collect_fps_aloha.py --experts-only [--seeds 20]   # re-measure the expert table alone

Figures (each per wall-clock second and per CPU second of this process, `*_cpu`, as in
collect_fps.py, whose `pin` and `Clock` this reuses):

- `render_fps`: `top` renders per second, scene fixed, fast settings (`envs/render.py`).
- `default_render_fps`: the same with MuJoCo's default settings (shadows, 4x MSAA), for comparison.
- `sim_steps_per_s`: joint-space physics + reward steps per second, no rendering, plan cached.
- `plan_s`: seconds to plan one episode in the end-effector scene (once per seed).
- `worker_frames_per_s`: recorded frames per second of `run_attempt` on transfer-cube seeds
  (plan + rendered replay; video encoding happens in the main process and is not included).
- `expert`: per task, successes / seeds over `--seeds` collection seeds (`episode_seed(0, task, a)`,
  the seeds `vlaforge collect` uses), physics only.

Writes benchmarks/results/collect_fps_aloha.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vlaforge  # noqa: E402, F401  (sets MUJOCO_GL=egl before mujoco is imported)
from collect_fps import Clock, pin  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "collect_fps_aloha.json"


def render_rates(size: int, n: int = 200) -> dict[str, tuple[float, float]]:
    import mujoco

    from vlaforge.envs import aloha_scene
    from vlaforge.envs.aloha import AlohaEnv

    env = AlohaEnv("transfer-cube", image_size=size)
    env.reset(0)
    for _ in range(10):
        env.render("top")
    with Clock() as fast:
        for _ in range(n):
            env.render("top")
    model = aloha_scene.load_model("transfer-cube")  # MuJoCo defaults: the scene's 4096 shadows, 4x MSAA
    data = mujoco.MjData(model)
    aloha_scene.reset_data(model, data, aloha_scene.sample_placement("transfer-cube", 0))
    default = mujoco.Renderer(model, size, size)
    with Clock() as slow:
        for _ in range(n // 4):
            default.update_scene(data, camera="top")
            default.render()
    default.close()
    env.close()
    return {"render_fps": fast.rates(n), "default_render_fps": slow.rates(n // 4)}


def sim_rates(seed: int = 0) -> dict[str, object]:
    from vlaforge.envs.aloha import AlohaEnv

    env = AlohaEnv("transfer-cube", image_size=16)
    env.reset(seed, render=False)
    with Clock() as plan:
        env.expert_action()
    with Clock() as sim:
        for _ in range(400):
            env.step(env.expert_action(), render=False)
    env.close()
    return {
        "plan_s": round(plan.wall, 3),
        "plan_s_cpu": round(plan.cpu, 3),
        "sim_steps_per_s": sim.rates(400),
    }


def worker_rate(size: int, seeds: int) -> tuple[float, float, int]:
    from vlaforge.data.collect import episode_seed
    from vlaforge.envs.rollout import AttemptSpec, run_attempt

    frames = 0
    with Clock() as clock:
        for a in range(seeds):
            spec = AttemptSpec(task="transfer-cube", seed=episode_seed(0, "transfer-cube", a), cameras=("top",),
                               image_size=size, max_steps=400, simulator="aloha")  # fmt: skip
            rollout = run_attempt(spec)
            frames += len(rollout.frames["action"]) if rollout.success else 0
    wall, cpu = clock.rates(frames)
    return wall, cpu, frames


def expert_rates(seeds: int) -> dict[str, dict[str, object]]:
    from vlaforge.data.collect import episode_seed
    from vlaforge.envs.aloha import AlohaEnv
    from vlaforge.envs.registry import get_simulator
    from vlaforge.envs.rollout import probe_attempt

    sim = get_simulator("aloha")
    out = {}
    for task in sim.tasks:
        env = AlohaEnv(task, image_size=16)
        steps = []
        for a in range(seeds):
            first, _ = probe_attempt(env, sim.expert_action, episode_seed(0, task, a), sim.max_steps)
            steps.append(first)
        env.close()
        ok = [s for s in steps if s is not None]
        out[task] = {"successes": len(ok), "seeds": seeds, "success_rate": round(len(ok) / seeds, 3),
                     "mean_success_step": round(sum(ok) / len(ok), 1) if ok else None}  # fmt: skip
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--seeds", type=int, default=20, help="seeds per task for the expert success rate")
    parser.add_argument("--fps-seeds", type=int, default=2, help="transfer-cube attempts timed for frames/s")
    parser.add_argument("--cores", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument(
        "--experts-only",
        action="store_true",
        help="measure the expert table alone; keep the JSON's other figures",
    )
    args = parser.parse_args()
    if args.experts_only:  # the experts run physics only: their table does not depend on rendering
        path = Path(args.out)
        result = json.loads(path.read_text()) if path.exists() else {}
        result["expert"] = expert_rates(args.seeds)
        result["expert_time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result["expert"], indent=2))
        return 0
    cores = pin(args.cores)
    result: dict[str, object] = {
        "image_size": args.image_size, "camera": "top", "cores": cores,
        "load_average_at_start": os.getloadavg(), "cpu": platform.processor() or platform.machine(),
    }  # fmt: skip
    result.update(render_rates(args.image_size))
    result.update(sim_rates())
    wall, cpu, frames = worker_rate(args.image_size, args.fps_seeds)
    result.update(worker_frames_per_s=wall, worker_frames_per_s_cpu=cpu, worker_frames=frames)
    result["expert"] = expert_rates(args.seeds)
    result["load_average_at_end"] = os.getloadavg()
    result["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
