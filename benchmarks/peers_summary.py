"""The peer table of benchmarks/peers.sh: vlaforge's quickstart policy against LeRobot's ACT and
Diffusion Policy trained on the same data for the same wall-clock, evaluated on the same seeds.

    python benchmarks/peers_summary.py OUT RESULT.json      # reads OUT/{ours,act,diffusion}
    python benchmarks/peers_summary.py OUT RESULT.json --ours MT10_OUT   # ours from benchmarks/mt10_cpu.sh
    python benchmarks/peers_summary.py --train-minutes OURS   # ours' training minutes

`ours` is a `vlaforge quickstart` folder (quickstart.json, run, eval) or a benchmarks/mt10_cpu.sh
folder (run, eval).

Columns: success (mean over tasks, and per task, with the episodes behind it), training samples/s
(median over the run for ours; steps x batch / wall-clock for the peers, whose time includes
LeRobot's video-decoding data loader, as a user of it would see), latency per chunk (batch 1, one
thread, p50), the chunk and the actions executed from each, trained parameters (ours also uses a
frozen 22.7 M sentence encoder for the instruction, computed once per task). Only figures are kept.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from statistics import median


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _eval(path: Path) -> dict:
    info = _json(path / "eval_info.json")
    return {
        "success_task_mean": info["overall"]["success_rate_task_mean"],
        "per_task": {t: m["success_rate"] for t, m in info["per_task"].items()},
        "episodes_per_task": info["episodes_per_task"],
        "seed": info.get("seed"),
        "train_seeds": info["train_seeds"]["status"],
        "chunk": info["execution"]["chunk"],
        "executed_per_chunk": info["execution"]["execute_steps"],
        "eval_wall_s": round(info["timing"]["wall_time_s"], 1),
    }


def train_minutes(out: Path) -> float:
    """Ours' training minutes: the quickstart's own record, else the span of the run's log."""
    if (out / "quickstart.json").is_file():
        return round(_json(out / "quickstart.json")["seconds"]["train"] / 60, 2)
    from mt10_summary import train_summary

    return train_summary(out / "run")["train_minutes"]


def _batch_size(out: Path) -> int:
    """The batch of a `vlaforge train` run, resolved from its run.json as the trainer resolves it."""
    from vlaforge.config import apply_overrides
    from vlaforge.train.config import TrainConfig, split_overrides

    _, train_over = split_overrides(_json(out / "run" / "run.json").get("overrides", []))
    return apply_overrides(TrainConfig(), train_over).batch_size


def _suite(out: Path) -> str:
    suite = _json(out / "eval" / "eval_info.json")["suite"]
    return suite.upper() if isinstance(suite, str) and "," not in suite else "multi-task"


def ours(out: Path) -> dict:
    from vlaforge.train.log import read_log, train_records

    steps = train_records(read_log(out / "run"))
    latency = _json(out / "latency.json")
    quick = _json(out / "quickstart.json") if (out / "quickstart.json").is_file() else None
    return {
        "name": f"vlaforge {'quickstart' if quick else _suite(out) + ' CPU tier'} (default preset, regression head)",
        "train_minutes": train_minutes(out),
        "steps": quick["steps_trained"] if quick else steps[-1]["step"],
        "batch_size": quick["config"]["batch_size"] if quick else _batch_size(out),
        "samples_per_s": round(median(r["samples_per_s"] for r in steps[1:] or steps), 1),
        "latency_p50_ms": latency.get("p50_ms"),
        "parameters": latency["params_trainable"],
        "frozen_text_encoder_parameters": latency["params_frozen_text"],
        "eval": _eval(out / "eval"),
    }


def peer(run: Path) -> dict:
    train, latency = _json(run / "train.json"), _json(run / "latency.json")
    return {
        "name": f"LeRobot {train['lerobot_version']} {train['policy']}",
        "train_minutes": train["train_minutes"],
        "steps": train["steps"],
        "batch_size": train["batch_size"],
        "samples_per_s": train["samples_per_s"],
        "latency_p50_ms": latency["p50_ms"],
        "parameters": train["parameters"],
        "config_overrides": train.get("config_overrides", {}),
        "task_onehot": bool(train.get("task_onehot")),
        "final_loss": train["final_loss"],
        "eval": _eval(run / "eval"),
    }


def table(rows: list[dict]) -> str:
    head = "| policy | success (mean over tasks) | episodes | train min | steps x batch | samples/s | latency/chunk (1 thread) | chunk executed | parameters |"
    lines = [head, "|" + " --- |" * 9]
    for r in rows:
        e = r["eval"]
        lines.append(
            f"| {r['name']} | {100 * e['success_task_mean']:.0f}% | {e['episodes_per_task']} x {len(e['per_task'])} "
            f"| {r['train_minutes']:.1f} | {r['steps']} x {r['batch_size']} | {r['samples_per_s']} "
            f"| {r['latency_p50_ms']} ms | {e['executed_per_chunk']} of {e['chunk']} | {r['parameters'] / 1e6:.1f} M |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("result", type=Path, nargs="?")
    parser.add_argument("--train-minutes", action="store_true", help="print ours' (OUT's) training minutes")
    parser.add_argument("--ours", type=Path, help="ours' folder (default OUT/ours)")
    args = parser.parse_args()
    if args.train_minutes:
        print(train_minutes(args.out))
        return 0
    rows = [ours(args.ours or args.out / "ours")]
    rows += [
        peer(args.out / p)
        for p in ("act", "diffusion")
        if (args.out / p / "eval" / "eval_info.json").exists()
    ]
    load = os.getloadavg()[0]
    result = {"command": "bash benchmarks/peers.sh", "load_1min_at_summary": round(load, 1), "rows": rows}
    print(table(rows))
    if args.result:
        args.result.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
