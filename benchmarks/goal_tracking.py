"""Does a policy go where the goal is? Final hand position against the goal on a Meta-World task.

For a goal-reaching task (reach, whose goal is only a 2-3 px marker in the image), roll the policy
out from fresh `heldout` placements and compare where the hand ends with where the goal was: the
spread of the final hand positions against the spread of the goals, their correlation per axis,
and the closest approach. A policy that localizes the goal has a hand spread near the goal spread
and correlations near 1; one that has learnt the mean motion ends at one place whatever the goal.

    python benchmarks/goal_tracking.py --policy RUN/checkpoints/last [--task reach-v3] [--episodes 12]

Seeds: `vlaforge eval`'s block 0 (`eval_seeds`, heldout draws), checked disjoint from the
checkpoint's training seeds; the policy runs as `vlaforge eval` runs it (its history window fed
every step, `execute_steps` actions per chunk). Writes
benchmarks/results/goal_tracking.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "goal_tracking.json"


def rollout(policy, env, seed: int, steps: int) -> dict:
    obs = env.reset(seed)
    goal = obs["observation.environment_state"][36:39].astype(float)
    policy.observe(0, obs, True)
    execute, closest, success = policy.spec.execute_steps, np.inf, False
    for t in range(steps):
        if t % execute == 0:
            chunk = policy.infer([0]).actions[0]  # [H, A]
        obs, succ, done, _ = env.step(chunk[t % execute])
        policy.observe(0, obs, False)
        hand = obs["observation.state"][:3].astype(float)
        closest, success = min(closest, float(np.linalg.norm(hand - goal))), success or succ
    return {"seed": seed, "goal": goal.round(4).tolist(), "final_hand": hand.round(4).tolist(),
            "closest_m": round(closest, 4), "success": bool(success)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", required=True, help="a checkpoint folder")
    parser.add_argument("--task", default="reach-v3")
    parser.add_argument("--episodes", type=int, default=12)
    parser.add_argument("--steps", type=int, default=240, help="control steps per episode")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    import torch

    from vlaforge.envs.metaworld import MetaWorldEnv
    from vlaforge.eval.config import EvalConfig
    from vlaforge.eval.policies import CheckpointPolicy
    from vlaforge.eval.seeds import eval_seeds
    from vlaforge.models.policy import VLAPolicy

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    model = VLAPolicy.from_pretrained(args.policy).eval()
    policy = CheckpointPolicy(model, EvalConfig(policy=args.policy, suite=args.task, out="-"))
    env = MetaWorldEnv(args.task, cameras=policy.spec.cameras, image_size=policy.spec.image_size)
    seeds = eval_seeds(0, args.episodes)
    policy.spec.train_seeds.check([args.task], seeds, allow=False, instructions={args.task: env.instruction})
    rows = []
    try:
        for seed in seeds:
            rows.append(rollout(policy, env, seed, args.steps))
            r = rows[-1]
            print(
                f"seed {r['seed']}: goal {r['goal']} final hand {r['final_hand']} closest {r['closest_m']:.3f} m"
            )
    finally:
        env.close()
    goals, hands = np.array([r["goal"] for r in rows]), np.array([r["final_hand"] for r in rows])  # [N, 3]
    summary = {
        "goal_std_m": goals.std(0).round(4).tolist(),
        "final_hand_std_m": hands.std(0).round(4).tolist(),
        "mean_final_hand_minus_goal_m": (hands - goals).mean(0).round(4).tolist(),
        "corr_goal_final_hand": [
            round(float(np.corrcoef(goals[:, k], hands[:, k])[0, 1]), 3) for k in range(3)
        ],
        "median_closest_m": round(float(np.median([r["closest_m"] for r in rows])), 4),
        "success_rate": sum(r["success"] for r in rows) / len(rows),
    }
    result = {"command": "python benchmarks/goal_tracking.py", "policy": str(args.policy), "task": args.task,
              "steps": args.steps, "axes": "x, y, z (m, Meta-World world frame)", "summary": summary, "episodes": rows}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
