"""`vlaforge finetune`: continue a trained policy on new data (full, frozen parts, or LoRA).

    vlaforge finetune --from runs/octo/checkpoints/last --data data/new_robot --steps 2000 --out runs/ft
    vlaforge finetune --from CKPT --data DIR --freeze 'obs_encoder.*' --freeze 'task_encoder.*' --out RUN
    vlaforge finetune --from CKPT --data DIR --lora-rank 8 --out RUN      # adapters merged on save
    vlaforge finetune --resume RUN

Defaults differ from `train`: lr 1e-4, warmup 50 steps, EMA 0.99 (`train.config.FINETUNE_DEFAULTS`);
--lr / --set override them. The new data brings its own normalization stats; a different action or
proprio dimension gets fresh input/output layers while everything else loads. The trainable
parameter count is printed before the first step.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vlaforge.errors import VlaforgeError
from vlaforge.train.cli import add_common_arguments, run_spec
from vlaforge.train.config import FINETUNE_DEFAULTS

HELP = "fine-tune a trained policy on new data (full, frozen, LoRA)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from",
        dest="source",
        metavar="CKPT",
        help="pretrained checkpoint directory (or a run directory: its checkpoints/last)",
    )
    parser.add_argument(
        "--freeze",
        action="append",
        default=[],
        metavar="GLOB",
        help="freeze parameters whose names match (e.g. 'trunk.*'); repeatable",
    )
    parser.add_argument(
        "--lora-rank", type=int, default=0, help="LoRA rank on the trunk's linear layers (0 = off)"
    )
    add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from vlaforge.train.setup import execute

    if not args.resume:
        if not args.source:
            raise VlaforgeError("`vlaforge finetune` needs --from CKPT (a checkpoint directory)")
        if (Path(args.source) / "checkpoints" / "last").is_dir():  # a run directory: its last checkpoint
            args.source = str(Path(args.source) / "checkpoints" / "last")
        if not Path(args.source).is_dir():
            raise VlaforgeError(f"--from {args.source}: not a checkpoint directory")
        if args.lora_rank < 0:
            raise VlaforgeError("--lora-rank must be >= 0")
    extra = {
        "from": str(Path(args.source).resolve()) if args.source else None,
        "freeze": list(args.freeze),
        "lora_rank": args.lora_rank,
    }
    spec, out, resuming = run_spec(args, "finetune", extra)
    if spec.get("command") != "finetune":
        raise VlaforgeError(
            f"{out} is a `{spec.get('command')}` run; resume it with `vlaforge {spec.get('command')}`"
        )
    if not resuming:
        spec["overrides"] = list(FINETUNE_DEFAULTS) + spec["overrides"]
    return execute(spec, out, resuming, device=args.device)
