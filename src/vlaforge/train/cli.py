"""`vlaforge train`: train a policy from a preset on one or more LeRobot v3 datasets.

    vlaforge train --preset octo-small --data data/mt10 --data data/other:0.5 --steps 20000 \\
        --batch-size 64 --out runs/octo --set model.head.kind=flow --set train.lr=3e-4
    vlaforge train --resume runs/octo                      # continue exactly where it stopped
    vlaforge train --resume runs/octo --steps 40000        # ... or train longer (the cosine stretches)
    torchrun --nproc_per_node 2 -m vlaforge.cli train ...  # data parallel (see train/distributed.py)

Keys for --set: `model.<PolicyConfig field>` and `train.<TrainConfig field>` (see train/config.py).
The policy takes action_dim/state_dim from the data (the largest over the mixture) and checks that
every dataset has the preset's cameras before the first step. The run directory holds `run.json`
(everything needed to resume), `log.jsonl`, `tensorboard/` and `checkpoints/` (`step-XXXXXX/`,
`last`, `best`; each loads with `VLAPolicy.from_pretrained` and serves as is). With --resume, every
setting comes from RUN/run.json; only --steps and --device may change.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vlaforge.errors import VlaforgeError

HELP = "train a policy on one or more datasets"
RUN_FILE = "run.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", help="model preset (see `vlaforge presets`); default: the CPU default")
    add_common_arguments(parser)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by `train` and `finetune`."""
    parser.add_argument(
        "--data", action="append", metavar="DIR[:WEIGHT]", help="a dataset (repeat for a mixture)"
    )
    parser.add_argument("--out", help="run directory (checkpoints, logs)")
    parser.add_argument("--steps", type=int, help="optimizer steps (train.steps)")
    parser.add_argument("--batch-size", type=int, help="global batch per micro-step (train.batch_size)")
    parser.add_argument("--lr", type=float, help="peak learning rate (train.lr)")
    parser.add_argument("--grad-accum", type=int, help="micro-batches per step (train.grad_accum)")
    parser.add_argument("--val-fraction", type=float, help="held-out episode fraction (train.val_fraction)")
    parser.add_argument("--seed", type=int, help="seed (train.seed)")
    parser.add_argument(
        "--compile",
        action="store_true",
        default=None,
        help="torch.compile the image encoder and trunk (train.compile)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override, e.g. model.head.kind=flow or train.ema_decay=0",
    )
    parser.add_argument("--resume", metavar="RUN", help="continue RUN from its last checkpoint")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="training device")


SHORTHANDS = {
    "steps": "steps",
    "batch_size": "batch_size",
    "lr": "lr",
    "grad_accum": "grad_accum",
    "val_fraction": "val_fraction",
    "seed": "seed",
    "compile": "compile",
}


def overrides_from_args(args: argparse.Namespace) -> list[str]:
    """Shorthand flags as `train.*` overrides, followed by --set (which wins)."""
    items = [
        f"train.{key}={json.dumps(getattr(args, flag))}"
        for flag, key in SHORTHANDS.items()
        if getattr(args, flag, None) is not None
    ]
    return items + list(args.set)


def run_spec(args: argparse.Namespace, command: str, extra: dict | None = None) -> tuple[dict, Path, bool]:
    """The run's spec (new, or read back from RUN/run.json with --resume), its directory, resuming?"""
    if args.resume:
        out = Path(args.resume)
        if not (out / RUN_FILE).exists():
            raise VlaforgeError(f"--resume {out}: not a run directory (no {RUN_FILE})")
        spec = json.loads((out / RUN_FILE).read_text())
        if args.steps is not None:  # the one thing a resume may change: train longer
            spec["overrides"] = spec["overrides"] + [f"train.steps={args.steps}"]
        return spec, out, True
    if not args.data or not args.out:
        raise VlaforgeError(f"`vlaforge {command}` needs --data DIR and --out RUN (or --resume RUN)")
    out = Path(args.out)
    if (out / "checkpoints").exists() and any((out / "checkpoints").iterdir()):
        raise VlaforgeError(
            f"{out} already holds checkpoints; continue it with --resume {out} or pick another --out"
        )
    spec = {
        "command": command,
        "data": list(args.data),
        "overrides": overrides_from_args(args),
        **(extra or {}),
    }
    return spec, out, False


def run(args: argparse.Namespace) -> int:
    from vlaforge.train.setup import execute

    spec, out, resuming = run_spec(args, "train", {"preset": args.preset})
    if spec.get("command") != "train":
        raise VlaforgeError(
            f"{out} is a `{spec.get('command')}` run; resume it with `vlaforge {spec.get('command')}`"
        )
    return execute(spec, out, resuming, device=args.device)
