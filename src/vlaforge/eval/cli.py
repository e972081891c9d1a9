"""`vlaforge eval`: evaluate a checkpoint (or the scripted expert, or a random policy) on Meta-World.

    vlaforge eval --policy RUN/checkpoints/last --suite mt10 --episodes-per-task 10 --workers 2 --out E
    vlaforge eval --policy expert --suite reach-v3,drawer-open-v3 --episodes-per-task 3 --out E

Writes E/eval_info.json, E/report.html and E/videos/<task>/episode_NNN.mp4, and prints a table.
Exit status 0, or 130 after Ctrl-C (the results so far are written first).
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import Any

from vlaforge.errors import VlaforgeError

HELP = "evaluate a policy (or the scripted expert) on Meta-World"
SCRIPTED = ("expert", "random")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", required=True, help="checkpoint directory or hub id, or 'expert' / 'random'")
    p.add_argument(
        "--suite", required=True, help="mt10|mt50|easy|medium|hard|very_hard|ml45-train|ml45-test|TASK,..."
    )
    p.add_argument("--episodes-per-task", type=int, default=10)
    p.add_argument("--workers", type=int, default=2, help="environment worker processes")
    p.add_argument(
        "--envs-per-worker",
        type=int,
        default=4,
        help="environments per worker (policy batch = workers x this)",
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0, help="eval seed block (disjoint from collection seeds)")
    p.add_argument(
        "--allow-train-seeds", action="store_true", help="evaluate even on seeds used for training data"
    )
    p.add_argument("--execution", choices=("receding", "ensemble", "single"), default="receding")
    p.add_argument(
        "--execute-steps",
        type=int,
        default=None,
        help="receding horizon: actions per chunk (default: the policy's)",
    )
    p.add_argument(
        "--ensemble-coeff", type=float, default=0.01, help="temporal ensembling m in exp(-m*i), oldest i=0"
    )
    p.add_argument("--videos-per-task", type=int, default=2)
    p.add_argument("--max-steps", type=int, default=500)
    p.add_argument(
        "--image-size",
        type=int,
        default=128,
        help="render size for expert/random (a checkpoint sets its own)",
    )
    p.add_argument("--cameras", default="corner2", help="cameras for expert/random, comma-separated")
    p.add_argument("--device", default="cpu", help="policy device: cpu, cuda, auto")
    p.add_argument(
        "--dataset-index", type=int, default=None, help="mixture policy: which training dataset is Meta-World"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing evaluation in --out")


def load_policy(spec: str, args: argparse.Namespace) -> Any:
    """'expert' / 'random' / a checkpoint directory / a hub id -> a policy object."""
    from vlaforge.eval.baselines import ExpertPolicy, RandomPolicy, ScriptedConfig

    if spec in SCRIPTED:
        cams = tuple(c for c in args.cameras.split(",") if c)
        cfg = ScriptedConfig(cameras=cams, image_size=args.image_size)
        return ExpertPolicy(cfg) if spec == "expert" else RandomPolicy(cfg)
    if not Path(spec).exists() and spec.count("/") != 1:
        raise VlaforgeError(f"--policy {spec!r}: no such checkpoint directory (or use 'expert' / 'random')")
    from vlaforge.models.policy import VLAPolicy

    policy = VLAPolicy.from_pretrained(spec)
    policy.eval()
    device = _device(args.device)
    return policy.to(device)


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VlaforgeError(f"--device {name}: CUDA is not available here")
    return name


def _check_args(args: argparse.Namespace) -> None:
    for flag in ("episodes_per_task", "workers", "envs_per_worker", "max_steps", "image_size"):
        if getattr(args, flag) < 1:
            raise VlaforgeError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if args.videos_per_task < 0:
        raise VlaforgeError(f"--videos-per-task must be >= 0, got {args.videos_per_task}")
    if (Path(args.out) / "eval_info.json").exists() and not args.overwrite:
        raise VlaforgeError(
            f"{args.out} already holds an evaluation (eval_info.json); pass --overwrite or pick another --out"
        )


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from vlaforge.envs.tasks import resolve_tasks
    from vlaforge.eval.report import format_table
    from vlaforge.eval.runner import EvalConfig, preflight, run_evaluation
    from vlaforge.eval.seeds import TrainSeeds

    _check_args(args)
    tasks = resolve_tasks(args.suite)
    policy = load_policy(args.policy, args)
    cfg = EvalConfig(
        episodes_per_task=args.episodes_per_task, workers=args.workers, envs_per_worker=args.envs_per_worker,
        max_steps=args.max_steps, seed=args.seed, execution=args.execution, execute_steps=args.execute_steps,
        ensemble_coeff=args.ensemble_coeff, videos_per_task=args.videos_per_task,
        allow_train_seeds=args.allow_train_seeds, dataset_index=args.dataset_index,
    )  # fmt: skip
    seeds = (
        TrainSeeds.not_applicable(args.policy)
        if args.policy in SCRIPTED
        else TrainSeeds.from_metadata(policy.metadata)
    )
    preflight(policy, tasks, cfg, seeds)  # everything that can fail, before the old results go
    if args.overwrite and (Path(args.out) / "eval_info.json").exists():
        shutil.rmtree(Path(args.out) / "videos", ignore_errors=True)  # the replaced run's videos
    info = run_evaluation(policy, tasks, cfg, args.out, name=args.policy, suite=args.suite, train_seeds=seeds)
    print(format_table(info))
    print(f"report: {Path(args.out) / 'report.html'}")
    return 130 if info["interrupted"] else 0
