"""Execution under inference delay on Meta-World: synchronous, naive async, temporal ensembling, RTC.

One flow policy (the `default` preset with the flow head, chunk 48, 24 actions executed per chunk, so
that a 200 ms delay = 16 control steps at 80 Hz still fits: delay < executed <= chunk - delay) is
trained on the quickstart's three tasks, then evaluated with `vlaforge eval` for each execution mode
and simulated delay (`--inference-delay-ms`: the environment keeps executing the old plan for that
many ms of control steps while the next chunk is computed):

- `sync`:     delay 0, the robot waits for every chunk (what a blocking client does);
- `receding`: naive async, the new chunk takes over when it arrives (its first rows are past);
- `ensemble`: ACT temporal ensembling, a chunk requested every step, each arriving late;
- `rtc`:      naive async whose chunks are guided toward the committed plan (real-time chunking).

Reports success and jerk (mean |third difference| of the commanded positions, the integrated
deltas, gripper left out) over whole episodes and around chunk switches. Every stage is the command
a user would type; it is printed before it runs.

    python benchmarks/rtc_delay.py [--out DIR] [--steps 1500] [--eval-episodes 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "rtc_delay.json"
TASKS = "drawer-close-v3,door-open-v3,handle-press-v3"
VLAFORGE = [sys.executable, "-m", "vlaforge"]


def sh(args: list[str]) -> float:
    print("$ vlaforge " + " ".join(shlex.quote(a) for a in args), flush=True)
    start = time.perf_counter()
    subprocess.run([*VLAFORGE, *args], check=True)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="/tmp/vlaforge-rtc")
    p.add_argument("--tasks", default=TASKS)
    p.add_argument("--episodes", type=int, default=20, help="demonstrations per task")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=1500, help="training steps")
    p.add_argument("--eval-episodes", type=int, default=5, help="evaluation episodes per task and setting")
    p.add_argument("--delays", default="50,100,200", help="ms, besides the synchronous baseline")
    p.add_argument("--modes", default="receding,ensemble,rtc")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    out = Path(args.out)
    data, run = out / "data", out / "run"
    if not (data / "meta" / "info.json").exists():
        sh(["collect", "metaworld", "--tasks", args.tasks, "--episodes-per-task", str(args.episodes),
            "--image-size", str(args.image_size), "--workers", str(args.workers), "--out", str(data)])  # fmt: skip
    train_s = 0.0
    if not (run / "checkpoints" / "last").exists():
        train_s = sh(["train", "--preset", "default", "--data", str(data), "--steps", str(args.steps),
                      "--out", str(run), "--set", "model.head.kind=flow", "--set", "model.chunk=48",
                      "--set", "model.execute_steps=24", "--set", f"model.image_size={args.image_size}",
                      "--set", "train.tensorboard=false"])  # fmt: skip
    settings = [("sync", 0.0)] + [
        (m, float(d)) for d in args.delays.split(",") for m in args.modes.split(",")
    ]
    rows = []
    for mode, delay in settings:
        target = out / "eval" / f"{mode}-{delay:g}ms"
        wall = sh(["eval", "--policy", str(run / "checkpoints" / "last"), "--suite", args.tasks,
                   "--episodes-per-task", str(args.eval_episodes), "--workers", str(args.workers),
                   "--execution", "receding" if mode == "sync" else mode, "--inference-delay-ms", f"{delay:g}",
                   "--videos-per-task", "0", "--no-progress", "--overwrite", "--out", str(target)])  # fmt: skip
        info = json.loads((target / "eval_info.json").read_text())
        per_task = info["per_task"].values()
        jerk = [m["mean_jerk"] for m in per_task if m["mean_jerk"] is not None]
        boundary = [m["mean_boundary_jerk"] for m in per_task if m["mean_boundary_jerk"] is not None]
        rows.append({
            "mode": mode, "delay_ms": delay, "delay_steps": info["execution"]["delay_steps"],
            "success": info["overall"]["success_rate_task_mean"],
            "episodes": sum(m["episodes"] for m in per_task),
            "mean_jerk": sum(jerk) / len(jerk) if jerk else None,
            "mean_boundary_jerk": sum(boundary) / len(boundary) if boundary else None,
            "policy_calls": info["timing"]["policy_calls"], "wall_s": round(wall, 1),
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    result = {
        "benchmark": "rtc_delay",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_1min": os.getloadavg()[0]},
        "settings": {**vars(args), "policy": "default preset, flow head, chunk 48, 24 executed, 80 Hz"},
        "train_s": round(train_s, 1),
        "rows": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'mode':<9} {'delay':>6} {'steps':>5} {'success':>8} {'jerk':>8} {'at switch':>9}")
    for r in rows:
        j = "-" if r["mean_jerk"] is None else f"{r['mean_jerk']:.4f}"
        b = "-" if r["mean_boundary_jerk"] is None else f"{r['mean_boundary_jerk']:.4f}"
        print(
            f"{r['mode']:<9} {r['delay_ms']:>4g}ms {r['delay_steps']:>5} {100 * r['success']:>7.0f}% {j:>8} {b:>9}"
        )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
