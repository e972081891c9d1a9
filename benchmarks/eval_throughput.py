"""Evaluation throughput: environment steps/s with rendering and a policy, on W worker processes.

Three runs through the real runner (`vlaforge.eval.runner.run_evaluation` with an `EvalConfig`), each on the same tasks
and step budget:
- `expert`: the scripted expert (no network): the env + render + IPC ceiling;
- `policy-receding`: the default preset, random init, receding horizon (its `execute_steps`);
- `policy-single`: the same policy called at every step (the policy's cost dominates).

A random-init policy never succeeds, so every episode runs to `--max-steps` and the step count is
fixed. Prints a table and writes benchmarks/results/eval_throughput.json.

    python benchmarks/eval_throughput.py --workers 2 --image-size 128
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RESULTS = Path(__file__).resolve().parent / "results" / "eval_throughput.json"


def _policy(image_size: int):
    import dataclasses

    from vlaforge.models.policy import VLAPolicy

    try:
        from vlaforge.models.presets import DEFAULT_PRESET, get_preset

        name, cfg = DEFAULT_PRESET, get_preset(DEFAULT_PRESET)
    except ImportError:  # presets not available: the PolicyConfig defaults
        from vlaforge.models.config import PolicyConfig

        name, cfg = "PolicyConfig()", PolicyConfig()
    cfg = dataclasses.replace(cfg, image_size=image_size)
    return name, VLAPolicy(cfg).eval()


def _config(name: str, args: argparse.Namespace, execution: str, out: str):
    from vlaforge.eval.config import EvalConfig

    return EvalConfig(
        policy=name, suite=args.tasks, out=out, episodes_per_task=args.episodes_per_task, workers=args.workers,
        envs_per_worker=args.envs_per_worker, max_steps=args.max_steps, execution=execution, videos_per_task=0,
        image_size=args.image_size, progress=False,
    )  # fmt: skip


def _run(name: str, make_policy, args: argparse.Namespace, execution: str) -> dict:
    """`make_policy(cfg)`: the `Policy` (or `VLAPolicy`) to evaluate under that EvalConfig."""
    from vlaforge.eval.runner import run_evaluation

    with tempfile.TemporaryDirectory() as out:
        cfg = _config(name, args, execution, out)
        info = run_evaluation(make_policy(cfg), args.tasks.split(","), cfg)
    t = info["timing"]
    return {
        "run": name,
        "execution": execution,
        "env_steps": t["env_steps"],
        "wall_time_s": round(t["wall_time_s"], 3),
        "env_steps_per_s": round(t["env_steps_per_s"], 1),
        "rollout_steps_per_s": round(t["rollout_steps_per_s"], 1),
        "policy_calls": t["policy_calls"],
        "torch_threads": t["torch_threads"],
        "policy_time_s": round(t["policy_time_s"], 3),
        "policy_ms_per_call": round(1000 * t["policy_time_s"] / max(1, t["policy_calls"]), 2),
        "success_rate": info["overall"]["success_rate"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default="reach-v3,drawer-open-v3")
    p.add_argument("--episodes-per-task", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--envs-per-worker", type=int, default=4)
    p.add_argument("--max-steps", type=int, default=100)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--skip-single", action="store_true", help="skip the policy-every-step run")
    args = p.parse_args()

    import dataclasses

    import torch

    from vlaforge.envs.registry import get_simulator
    from vlaforge.eval.baselines import ExpertPolicy

    def expert(cfg):
        policy = ExpertPolicy(cfg, get_simulator(cfg.simulator))
        # render every step, as a policy run does: the env + render + IPC ceiling
        policy.spec = dataclasses.replace(policy.spec, uses_images=True)
        return policy

    preset, policy = _policy(args.image_size)
    rows = [_run("expert", expert, args, "receding")]
    rows.append(_run(f"policy-receding ({preset})", lambda cfg: policy, args, "receding"))
    if not args.skip_single:
        rows.append(_run(f"policy-single ({preset})", lambda cfg: policy, args, "single"))
    for r in rows:
        print(f"{r['run']:<32} {r['env_steps_per_s']:>6.1f} env steps/s ({r['rollout_steps_per_s']:.1f} after start-up; {r['env_steps']} steps, "
              f"{r['policy_calls']} policy calls, {r['policy_ms_per_call']} ms/call)")  # fmt: skip
    result = {
        "benchmark": "eval_throughput",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "torch_threads": torch.get_num_threads(),
            "load_average_1m": round(os.getloadavg()[0], 2),  # > cpus: other work shared the cores (noisy)
        },
        "settings": vars(args) | {"preset": preset, "batch": args.workers * args.envs_per_worker},
        "runs": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
