"""Small results JSON from the MT10 runs of benchmarks/mt10_cpu.sh and benchmarks/mt10_heads.sh.

    python benchmarks/mt10_summary.py cpu OUT RESULT.json [--recipe TEXT]
    python benchmarks/mt10_summary.py heads OUT RESULT.json
    python benchmarks/mt10_summary.py views OUT RESULT.json [--recipe TEXT] [--command TEXT]
    python benchmarks/mt10_summary.py arms OUT RESULT.json [--recipe TEXT] [--command TEXT]
    python benchmarks/mt10_summary.py quickstarts OUT RESULT.json [--recipe TEXT] [--command TEXT]

`cpu` reads OUT/run and OUT/eval; `heads` reads OUT/heads/<head>/{run files, eval, latency.json} for
every head trained there; `views` reads OUT/<camera>/{run, eval, goal.json} for every camera of
benchmarks/view_ab.sh, `arms` the same for every arm of benchmarks/lever_ab.sh, `quickstarts` for
every `vlaforge quickstart` folder of benchmarks/quickstart_arms.sh (plus its quickstart.json). Only figures and settings are kept (no checkpoints, no videos).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import median

from vlaforge.train.log import read_log, train_records, val_records


def eval_summary(eval_dir: Path) -> dict:
    """Success per group and task, and the rollout timing, from one `vlaforge eval` folder."""
    info = json.loads((eval_dir / "eval_info.json").read_text())
    timing = info["timing"]
    return {
        "created": info["created"],
        "suite": info["suite"],
        "protocol": (info.get("env") or {}).get("protocol", "heldout"),
        "episodes_per_task": info["episodes_per_task"],
        "execution": info["execution"],
        "train_seeds": info["train_seeds"]["status"],
        "mean_of_group_means": info["overall"]["success_rate"],
        "mean_over_tasks": info["overall"]["success_rate_task_mean"],
        "per_group": {g: m["success_rate"] for g, m in info["per_group"].items()},
        "per_task": {t: m["success_rate"] for t, m in info["per_task"].items()},
        "eval_wall_s": round(timing["wall_time_s"], 1),
        # Batched calls (one per env batch) while the environments render: real use, not a microbenchmark.
        "eval_ms_per_policy_call": round(1000 * timing["policy_time_s"] / max(1, timing["policy_calls"]), 2),
    }


def eval_row(eval_dir: Path) -> dict:
    """The per-task success of one evaluation with its size and timing (the rows of the
    multi-robot summaries), or {} when `eval_dir` has no eval_info.json yet."""
    if not (eval_dir / "eval_info.json").is_file():
        return {}
    e = eval_summary(eval_dir)
    keys = ("per_task", "episodes_per_task", "eval_wall_s", "eval_ms_per_policy_call")
    return {"success": e["mean_over_tasks"], **{k: e[k] for k in keys}}


def wall_minutes(run: Path) -> float | None:
    """Minutes in `run/wall_s` (whole seconds the benchmark script wrote), or None."""
    wall = run / "wall_s"
    return round(int(wall.read_text()) / 60, 1) if wall.is_file() else None


def train_summary(run: Path) -> dict:
    """Steps, wall time, throughput and the last validation loss from a run's log.jsonl."""
    rows = read_log(run)
    steps, vals = train_records(rows), val_records(rows)
    spec = json.loads((run / "run.json").read_text())
    return {
        "preset": spec.get("preset"),
        "overrides": spec.get("overrides", []),
        "steps": steps[-1]["step"],
        "train_minutes": round((steps[-1]["time"] - steps[0]["time"]) / 60, 1),
        "median_samples_per_s": round(median(r["samples_per_s"] for r in steps[1:] or steps), 1),
        "final_train_loss": round(steps[-1]["loss"], 4),
        "val_loss": [(r["step"], round(r["val_loss"], 4)) for r in vals],
    }


def heldout_chunk_l1(checkpoint: Path, data: Path, windows: int = 256) -> float:
    """Mean |sampled chunk - demonstrated chunk| (robot units) on windows of the validation episodes.

    The validation episodes are the ones the checkpoint records for `data` (metadata.json
    "datasets"[i]["val_episodes"]); sampling heads draw with a fixed generator. It separates "the
    head has not learnt the actions yet" from "the actions are right but the rollout drifts".
    """
    import numpy as np
    import torch

    from vlaforge.data.dataset import WindowConfig, WindowDataset, to_torch
    from vlaforge.models.policy import VLAPolicy

    policy = VLAPolicy.from_pretrained(checkpoint).eval()
    cfg = policy.config
    val = recorded_val_episodes(policy.metadata, data)
    window = WindowConfig(history=cfg.history, chunk=cfg.chunk, image_size=cfg.image_size)
    ds = WindowDataset(data, window, episodes=val)
    idx = np.random.default_rng(0).choice(len(ds), min(windows, len(ds)), replace=False)
    batch = to_torch(ds.sample_batch(idx))
    with torch.no_grad():
        actions = policy.sample_actions(batch, torch.Generator().manual_seed(0))  # [N, H, A]
    real = ~batch["action_is_pad"][:, : cfg.chunk]  # [N, H]
    err = (actions - batch["action"][:, : cfg.chunk].float()).abs().mean(-1)  # [N, H]
    return round(float(err[real].mean()), 4)


def recorded_val_episodes(metadata: dict, data: Path) -> list[int]:
    """The validation episodes the checkpoint's metadata records for the dataset at `data`."""
    datasets = metadata.get("datasets") or []
    root = str(Path(data).resolve())
    match = [d for d in datasets if d.get("root") == root] or (datasets if len(datasets) == 1 else [])
    if not match or not match[0].get("val_episodes"):
        raise SystemExit(f"mt10_summary: the checkpoint records no validation episodes for {data}")
    return [int(i) for i in match[0]["val_episodes"]]


def cpu(out: Path, recipe: str, command: str = "bash benchmarks/mt10_cpu.sh") -> dict:
    return {"command": command, "recipe": recipe,
            "train": train_summary(out / "run"), **eval_summary(out / "eval")}  # fmt: skip


def heads(out: Path, previous: Path | None = None) -> dict:
    """Rows for the heads run under OUT/heads, merged over the rows already in `previous` (a head
    run again replaces its row; heads not under OUT keep theirs)."""
    rows = {}
    if previous is not None and previous.is_file():
        rows.update(json.loads(previous.read_text()).get("heads", {}))
    for run in sorted((out / "heads").iterdir()):
        if not (run / "eval" / "eval_info.json").is_file():
            continue
        latency = json.loads((run / "latency.json").read_text().strip().splitlines()[-1])
        rows[run.name] = {
            "train": train_summary(run),
            **eval_summary(run / "eval"),
            "latency_batch1_1thread": {k: latency[k] for k in ("p50_ms", "p90_ms", "chunk", "ms_per_action")},
            "params_trainable": latency["params_trainable"],
            "heldout_chunk_l1": heldout_chunk_l1(run / "checkpoints" / "last", out / "data"),
        }
    return {
        "command": "bash benchmarks/mt10_heads.sh",
        "recipe": "default preset at 96 px, head swapped; same 50 demos/task, 2400 steps of batch 64, "
        "10 held-out episodes per task; latency: `vlaforge bench latency --policy CKPT --threads 1`; "
        "heldout_chunk_l1: mean |sampled - demonstrated| action over 256 windows of the validation episodes",
        "heads": rows,
    }


def views(out: Path, recipe: str, command: str, key: str = "views") -> dict:
    """One row per arm folder of OUT that has an evaluation (a camera of view_ab.sh, an arm of
    lever_ab.sh): training, success, reach's goal tracking; the rows under `key`."""
    rows = {}
    for arm in sorted(p for p in out.iterdir() if (p / "eval" / "eval_info.json").is_file()):
        goal = arm / "goal.json"
        rows[arm.name] = {
            "train": train_summary(arm / "run"),
            **eval_summary(arm / "eval"),
            "reach_goal_tracking": json.loads(goal.read_text())["summary"] if goal.is_file() else None,
        }
    return {"command": command, "recipe": recipe, key: rows}


def quickstarts(out: Path, recipe: str, command: str) -> dict:
    """`views` over quickstart folders, each row with the job's own record: its options, the
    minutes per stage and in all, the steps the calibration expected."""
    summary = views(out, recipe, command, "quickstarts")
    for name, row in summary["quickstarts"].items():
        job = json.loads((out / name / "quickstart.json").read_text())
        row["quickstart"] = {
            "config": {k: v for k, v in job["config"].items() if k != "out"},
            "minutes": {k: round(v / 60, 1) for k, v in job["seconds"].items()},
            "total_minutes": round(job["total_seconds"] / 60, 1),
            "steps_expected": job["steps_planned"],
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["cpu", "heads", "views", "arms", "quickstarts"])
    parser.add_argument("out", type=Path)
    parser.add_argument("result", type=Path)
    parser.add_argument("--recipe", default="")
    parser.add_argument("--command", default="bash benchmarks/mt10_cpu.sh", help="the command recorded (cpu)")
    args = parser.parse_args()
    if args.kind in ("views", "arms"):
        summary = views(args.out, args.recipe, args.command, args.kind)
    elif args.kind == "quickstarts":
        summary = quickstarts(args.out, args.recipe, args.command)
    elif args.kind == "cpu":
        summary = cpu(args.out, args.recipe, args.command)
    else:
        summary = heads(args.out, args.result)
    args.result.write_text(json.dumps(summary, indent=2) + "\n")
    if args.kind in ("views", "arms", "quickstarts"):
        for cam, row in summary[args.kind].items():
            print(f"{cam:<10} {100 * row['mean_over_tasks']:5.1f}% over tasks  {row['per_task']}  "
                  f"{row['train']['steps']} steps, val loss {row['train']['val_loss'][-1][1]}")  # fmt: skip
    elif args.kind == "cpu":
        print(f"{summary['suite'].upper()}: {100 * summary['mean_over_tasks']:.1f}% over tasks, "
              f"{100 * summary['mean_of_group_means']:.1f}% mean of group means -> {args.result}")  # fmt: skip
    else:
        for head, row in summary["heads"].items():
            print(f"{head:<11} {100 * row['mean_over_tasks']:5.1f}% over tasks  "
                  f"{100 * row['mean_of_group_means']:5.1f}% group mean  "
                  f"p50 {row['latency_batch1_1thread']['p50_ms']:.1f} ms  held-out L1 {row['heldout_chunk_l1']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
