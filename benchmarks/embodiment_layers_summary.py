"""Summarise `benchmarks/embodiment_layers.sh`: per arm (shared | separate embodiment layers) the
success on each embodiment, the training throughput and loss, the parameter counts.

    python benchmarks/embodiment_layers_summary.py OUT benchmarks/results/embodiment_layers.json

OUT/runs/<arm> is a training run, OUT/eval/<arm>-<embodiment> its evaluation (mw, aloha, rs).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mt10_summary import eval_row, train_summary, wall_minutes  # noqa: E402

ARMS = ("shared", "separate")
EMBODIMENTS = {
    "mw": "Meta-World Sawyer (drawer-open, window-open, peg-insert-side)",
    "aloha": "ALOHA transfer-cube",
    "rs": "robosuite Panda Lift",
}


def arm_summary(out: Path, arm: str) -> dict:
    from vlaforge.models.policy import VLAPolicy

    run = out / "runs" / arm
    policy = VLAPolicy.from_pretrained(run / "checkpoints" / "last")
    per_embodiment = {}
    for short, name in EMBODIMENTS.items():
        row = eval_row(out / "eval" / f"{arm}-{short}")
        if row:
            per_embodiment[short] = {"name": name, **row}
    found = [v["success"] for v in per_embodiment.values()]
    return {
        "train": train_summary(run),
        "wall_minutes": wall_minutes(run),
        "parameters": policy.num_parameters()["trainable"],
        "per_embodiment": per_embodiment,
        "mean_over_embodiments": round(sum(found) / len(found), 4) if found else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("json_out", type=Path)
    ap.add_argument("--demos", type=int, default=50)
    ap.add_argument("--eval-episodes", type=int, default=50)
    ap.add_argument("--steps", type=int, default=3000)
    args = ap.parse_args()
    arms = {
        arm: arm_summary(args.out, arm) for arm in ARMS if (args.out / "runs" / arm / "run.json").is_file()
    }
    result = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": f"bash benchmarks/embodiment_layers.sh OUT {args.demos} {args.steps} {args.eval_episodes}",
        "setup": (
            f"{args.demos} scripted demos per task, 64 px, default preset with camera slots primary/wrist, "
            "batch 64, seed 0; the two arms trained side by side with one torch thread each; "
            f"{args.eval_episodes} held-out episodes per task"
        ),  # fmt: skip
        "arms": arms,
    }
    args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    for arm, row in arms.items():
        cells = "  ".join(f"{k} {v['success']:.0%}" for k, v in row["per_embodiment"].items())
        t = row["train"]
        print(f"{arm:9s} {cells}  steps {t['steps']}  {t['median_samples_per_s']} samples/s  "
              f"loss {t['final_train_loss']}  params {row['parameters']:,}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
