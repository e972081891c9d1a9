"""Collection throughput of one worker on one CPU core: frames/s at 128 px, one camera (target >= 100).

    python benchmarks/collect_fps.py [--image-size 128] [--tasks reach-v3,...] [--seeds 2] [--cores 1]

Pins this process (and the software rasterizer threads it starts) to `--cores` cores, then measures
what a collection worker does per recorded frame: render (fast settings, `envs/render.py`), physics
and the scripted expert. Figures:

- `render_fps`: corner2 renders per second (the scene fixed).
- `sim_steps_per_s`: physics + expert steps per second without rendering (the success probe).
- `worker_frames_per_s`: recorded frames per second of `run_attempt` (probe pass + rendered replay),
  i.e. the per-worker collection rate; video encoding happens in the main process and is not included.
- `default_render_fps`: renders per second with MuJoCo's default settings, for comparison.

Each figure comes twice: per wall-clock second and per CPU second of this process (`*_cpu`, all its
threads). On an idle core they agree; on a shared, loaded machine the CPU-second figure is the one
that says what a dedicated core would do.

Writes benchmarks/results/collect_fps.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "collect_fps.json"


def pin(cores: int) -> list[int]:
    available = sorted(os.sched_getaffinity(0))
    chosen = available[-cores:]
    os.sched_setaffinity(0, chosen)
    return chosen


class Clock:
    """Wall and process-CPU time of a block."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    def rates(self, n: float) -> tuple[float, float]:
        return round(n / self.wall, 1), round(n / max(self.cpu, 1e-9), 1)


def render_fps(env, n: int = 200) -> tuple[float, float]:
    env.reset(0)
    for _ in range(10):
        env.render("corner2")
    with Clock() as clock:
        for _ in range(n):
            env.render("corner2")
    return clock.rates(n)


def default_render_fps(size: int, n: int = 30) -> tuple[float, float]:
    import mujoco

    from vlaforge.envs.metaworld import _make_sawyer

    env = _make_sawyer("reach-v3")
    env.seed(0)
    env.reset()
    renderer = mujoco.Renderer(env.model, size, size)  # MuJoCo defaults: shadows, 4x MSAA, skybox
    renderer.update_scene(env.data, camera="corner2")
    renderer.render()
    with Clock() as clock:
        for _ in range(n):
            renderer.update_scene(env.data, camera="corner2")
            renderer.render()
    renderer.close()
    return clock.rates(n)


def sim_steps_per_s(env, steps: int = 1000) -> tuple[float, float]:
    env.reset(0, render=False)
    with Clock() as clock:
        for _ in range(steps):
            env.step(env.expert_action(), render=False)
            if env.steps >= env.max_steps:
                env.reset(1, render=False)
    return clock.rates(steps)


def worker_fps(tasks: list[str], seeds: int, size: int) -> dict:
    from vlaforge.envs.rollout import AttemptSpec, run_attempt

    per_task = {}
    for task in tasks:
        run_attempt(AttemptSpec(task, 10_000, image_size=size))  # env creation + warm-up, not timed
        frames = 0
        with Clock() as clock:
            for seed in range(seeds):
                rollout = run_attempt(AttemptSpec(task, seed, image_size=size))
                frames += len(rollout.frames["action"]) if rollout.success else 0
        per_task[task] = clock.rates(frames)
    return per_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--tasks", default="reach-v3,drawer-open-v3,pick-place-v3,basketball-v3")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--cores", type=int, default=1)
    args = parser.parse_args()
    cores = pin(args.cores)
    from vlaforge.envs.metaworld import MetaWorldEnv

    env = MetaWorldEnv("pick-place-v3", image_size=args.image_size)
    result: dict = {"image_size": args.image_size, "cameras": ["corner2"], "cores": cores}
    result["render_fps"], result["render_fps_cpu"] = render_fps(env)
    result["sim_steps_per_s"], result["sim_steps_per_s_cpu"] = sim_steps_per_s(env)
    env.close()
    per_task = worker_fps(args.tasks.split(","), args.seeds, args.image_size)
    result["worker_frames_per_s_per_task"] = {t: wall for t, (wall, _) in per_task.items()}
    result["worker_frames_per_s_cpu_per_task"] = {t: cpu for t, (_, cpu) in per_task.items()}
    for key, i in (("worker_frames_per_s", 0), ("worker_frames_per_s_cpu", 1)):
        result[key] = round(sum(v[i] for v in per_task.values()) / len(per_task), 1)
    result["default_render_fps"], result["default_render_fps_cpu"] = default_render_fps(args.image_size)
    result["target_worker_frames_per_s"] = 100
    result["machine"] = {
        "cpu_count": os.cpu_count(),
        "processor": platform.processor(),
        "load_avg_1m": os.getloadavg()[0],
    }
    result["command"] = "python benchmarks/collect_fps.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
    )
    print(json.dumps(result, indent=2))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
