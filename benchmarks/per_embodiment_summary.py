"""Summarise `benchmarks/per_embodiment.sh`: per simulator, one policy trained on its demos alone,
its success per task (and arm), training throughput, loss and expert demo counts.

    python benchmarks/per_embodiment_summary.py OUT benchmarks/results/per_embodiment.json

OUT/data/<part> is the dataset, OUT/runs/<part> the training run, OUT/eval/<part> its evaluation.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mt10_summary import eval_row, train_summary, wall_minutes  # noqa: E402

PARTS = {"robosuite": "robosuite Lift and Stack on five arms", "aloha": "ALOHA transfer-cube and insertion"}


def part_summary(out: Path, part: str) -> dict:
    run = out / "runs" / part
    collect = json.loads((out / "data" / part / "meta" / "vlaforge_collect.json").read_text())
    return {
        "name": PARTS[part],
        "expert_success_rate": collect["expert_success_rate"],
        "demos": sum(t["episodes"] for t in collect["tasks"].values()),
        "train": train_summary(run),
        "wall_minutes": wall_minutes(run),
        **eval_row(out / "eval" / part),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("json_out", type=Path)
    ap.add_argument("--demos", type=int, default=50)
    ap.add_argument("--steps", type=int, default=3000)
    args = ap.parse_args()
    parts = {p: part_summary(args.out, p) for p in PARTS if (args.out / "runs" / p / "run.json").is_file()}
    previous = json.loads(args.json_out.read_text()).get("parts", {}) if args.json_out.is_file() else {}
    result = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": f"bash benchmarks/per_embodiment.sh OUT {args.demos} {args.steps}",
        "setup": (
            f"{args.demos} scripted demos per task (and arm), 64 px, default preset, batch 64, seed 0, "
            "one policy per simulator trained on its demos alone; held-out evaluation seeds"
        ),
        "parts": {**previous, **parts},  # a run of one part keeps the other's earlier figures
    }
    args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    for part, row in parts.items():
        t = row["train"]
        cells = "  ".join(f"{k} {v:.0%}" for k, v in row.get("per_task", {}).items())
        print(f"{part}: mean {row.get('success', float('nan')):.1%}  steps {t['steps']}  "
              f"{t['median_samples_per_s']} samples/s  loss {t['final_train_loss']}\n  {cells}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
