"""The `vlaforge eval` command as a library function: `run(EvalConfig(...)) -> exit status`.

    run(EvalConfig(policy="RUN/checkpoints/last", suite="mt10", out="E", episodes_per_task=10))
    run(EvalConfig(policy="expert", suite="reach-v3,drawer-open-v3", out="E", episodes_per_task=3))
    run(EvalConfig(policy="ws://127.0.0.1:8000", suite="reach-v3", out="E"))   # a policy server

Writes E/eval_info.json, E/report.html and E/videos/<task>/episode_NNN.mp4, and prints a table.
Returns 0, or 130 after Ctrl-C (the results so far are written first); bad input raises
`VlaforgeError` (the CLI prints it in one line and exits 2). The CLI (`vlaforge.cli`) builds the
`EvalConfig` from the command line.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from vlaforge.data.layout import check_output_dir
from vlaforge.envs.registry import get_simulator
from vlaforge.eval.config import EvalConfig, validate

HELP = "evaluate a policy (checkpoint, scripted expert, random or a ws:// policy server) in a simulator"


def run(cfg: EvalConfig) -> int:
    """Validate, evaluate, write the report, print the table; 0, or 130 when interrupted."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from vlaforge.eval.policies import resolve_policy
    from vlaforge.eval.report import format_table
    from vlaforge.eval.runner import preflight, run_evaluation

    validate(cfg)
    check_output_dir(cfg.out)  # /proc/x, a read-only disk: refused before the workers start
    sim = get_simulator(cfg.simulator)
    tasks = sim.resolve_tasks(cfg.suite, robots=cfg.robots)
    policy = resolve_policy(cfg, sim)
    try:
        preflight(policy, tasks, cfg, sim)  # everything that can fail, before the old results go
    except BaseException:
        policy.close()
        raise
    if cfg.overwrite and (Path(cfg.out) / "eval_info.json").exists():
        shutil.rmtree(Path(cfg.out) / "videos", ignore_errors=True)  # the replaced run's videos
    info = run_evaluation(policy, tasks, cfg)
    print(format_table(info))
    print(f"report: {Path(cfg.out) / 'report.html'}")
    return 130 if info["interrupted"] else 0
