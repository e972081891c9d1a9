"""`vlaforge train` and `vlaforge finetune`: their configs and the functions that run them.

    vlaforge train --preset octo-small --data data/mt10 --data data/other:0.5 --steps 20000 \\
        --batch-size 64 --out runs/octo --set model.head.kind=flow --set train.lr=3e-4
    vlaforge train --resume runs/octo                      # continue exactly where it stopped
    vlaforge train --resume runs/octo --steps 40000        # ... or train longer (the cosine stretches)
    torchrun --nproc_per_node 2 -m vlaforge.cli train ...  # data parallel (see train/distributed.py)
    vlaforge finetune --from runs/octo/checkpoints/last --data data/new_robot --steps 2000 --out runs/ft
    vlaforge finetune --from base --data data/new_task --steps 1000 --out runs/ft  # `vlaforge pretrain`'s
    vlaforge finetune --from CKPT --data DIR --freeze 'obs_encoder.*' --freeze 'task_encoder.*' --out RUN
    vlaforge finetune --from CKPT --data DIR --lora-rank 8 --out RUN      # adapters merged on save

`--set model.<PolicyConfig field>=...` overrides the preset (or, for finetune, the checkpoint's
config); `--set train.<TrainConfig field>=...` the loop (`--steps`, `--lr`, ... are its fields as
options). The policy takes action_dim/state_dim from the data (the largest over the mixture) and
checks that every dataset has the preset's cameras before the first step. The run directory holds
`run.json` (everything needed to resume), `log.jsonl`, `tensorboard/` and `checkpoints/`
(`step-XXXXXX/`, `last`, `best`; each loads with `VLAPolicy.from_pretrained` and serves as is).
With --resume, every setting comes from RUN/run.json; only --steps and --device may change.

Fine-tuning starts from `FINETUNE_TRAIN` (lr 1e-4, warmup 50 steps, EMA 0.99); the new data brings
its own normalization stats, and a different action or proprio dimension gets fresh input/output
layers while everything else loads. The trainable parameter count is printed before the first step.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vlaforge.config import apply_overrides, option
from vlaforge.data.layout import check_output_dir
from vlaforge.errors import VlaforgeError
from vlaforge.train.config import FINETUNE_TRAIN, TrainConfig, split_overrides, validate

RUN_FILE = "run.json"
SHORTHANDS = ("batch_size", "lr", "grad_accum", "val_fraction", "seed", "compile")
"""The `TrainConfig` fields that are options of their own (`--batch-size`, `--lr`, ...); `--steps`
is `RunCommand.steps`, so a resume can tell a given step count from the default."""


@dataclass(frozen=True)
class RunCommand:
    """What `vlaforge train` and `vlaforge finetune` share."""

    data: tuple[str, ...] = field(default=(), metadata=option(repeat=True, metavar="DIR[:WEIGHT]"))
    """A dataset directory, optionally with a mixture weight (repeat for a mixture)."""
    out: str | None = field(default=None, metadata=option(metavar="RUN"))
    """Run directory (checkpoints, logs); required unless --resume."""
    resume: str | None = field(default=None, metadata=option(metavar="RUN"))
    """Continue RUN from its last checkpoint with the settings in RUN/run.json (--steps trains on to
    that step; nothing else may change but --device)."""
    steps: int | None = None
    """Optimizer steps in total (train.steps, default 10000; the cosine schedule spans them); with
    --resume, train on to this step."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Training device (auto: CUDA when available)."""
    train: TrainConfig = field(default_factory=TrainConfig, metadata=option(expose=SHORTHANDS))
    """The training loop (`--set train.<field>=...`)."""
    model: tuple[str, ...] = field(default=(), metadata=option(overrides=True))
    """Overrides of the policy config, collected from `--set model.<field>=...` (applied to the preset
    or the pretrained checkpoint's config once it is known)."""


@dataclass(frozen=True)
class TrainCommand(RunCommand):
    """`vlaforge train`: a policy from a preset on one or more LeRobot v3 datasets."""

    preset: str | None = None
    """Model preset (see `vlaforge presets`); none: the CPU default."""


@dataclass(frozen=True)
class FinetuneCommand(RunCommand):
    """`vlaforge finetune`: continue a trained policy on new data (full, frozen parts, or LoRA)."""

    source: str | None = field(default=None, metadata=option(flag="from", metavar="CKPT"))
    """Pretrained checkpoint directory, a run directory (its checkpoints/last), or the name of a
    policy `vlaforge pretrain` published (`base`)."""
    freeze: tuple[str, ...] = field(default=(), metadata=option(repeat=True, metavar="GLOB"))
    """Freeze the parameters whose names match (fnmatch, e.g. 'trunk.*')."""
    lora_rank: int = 0
    """LoRA rank on the trunk's linear layers (0 = off); adapters are merged on save."""
    train: TrainConfig = field(default_factory=lambda: FINETUNE_TRAIN, metadata=option(expose=SHORTHANDS))
    """The training loop, starting from `FINETUNE_TRAIN` (`--set train.<field>=...`)."""


def run_train(cfg: TrainCommand, on_step: Callable | None = None) -> int:
    """Train (or resume) as `cfg` says; `on_step(trainer)` after every step. Returns the exit status."""
    extra = {"preset": cfg.preset}
    return _execute(cfg, "train", TrainCommand(), extra, on_step)


def run_finetune(cfg: FinetuneCommand, on_step: Callable | None = None) -> int:
    """Fine-tune (or resume) as `cfg` says; `on_step(trainer)` after every step. Returns the exit status."""
    source = cfg.source
    if not cfg.resume:
        if not source:
            raise VlaforgeError("`vlaforge finetune` needs --from CKPT (a checkpoint directory)")
        if (Path(source) / "checkpoints" / "last").is_dir():  # a run directory: its last checkpoint
            source = str(Path(source) / "checkpoints" / "last")
        if not Path(source).is_dir():  # a name `vlaforge pretrain` published (`--from base`)
            from vlaforge.models.policy import resolve_checkpoint

            try:
                source = str(resolve_checkpoint(source))
            except VlaforgeError as err:
                raise VlaforgeError(f"--from {source}: {err}") from err
        if cfg.lora_rank < 0:
            raise VlaforgeError(f"--lora-rank must be >= 0, got {cfg.lora_rank}")
    extra = {
        "from": str(Path(source).resolve()) if source else None,
        "freeze": list(cfg.freeze),
        "lora_rank": cfg.lora_rank,
    }
    return _execute(cfg, "finetune", FinetuneCommand(), extra, on_step)


def _execute(cfg: RunCommand, command: str, default: RunCommand, extra: dict, on_step=None) -> int:
    from vlaforge.train.setup import execute

    spec, out, resuming = training_spec(cfg, command, default, extra)
    if spec.get("command") != command:
        raise VlaforgeError(
            f"{out} is a `{spec.get('command')}` run; resume it with `vlaforge {spec.get('command')}`"
        )
    validate(apply_overrides(TrainConfig(), split_overrides(spec["overrides"])[1]))  # before any data
    check_output_dir(out, "--resume" if resuming else "--out")
    try:
        return execute(spec, out, resuming, device=cfg.device, on_step=on_step)
    except OSError as exc:  # a full or read-only disk (frame cache, run.json, logs)
        where = f" {exc.filename}" if exc.filename else ""
        raise VlaforgeError(
            f"`vlaforge {command}` could not read or write{where}: {exc.strerror or exc}"
        ) from exc


def training_spec(cfg: RunCommand, command: str, default: RunCommand, extra: dict) -> tuple[dict, Path, bool]:
    """The run's spec (new, or read back from RUN/run.json with --resume), its directory, resuming?"""
    if cfg.resume:
        return _resume_spec(cfg, default)
    if not cfg.data or not cfg.out:
        raise VlaforgeError(f"`vlaforge {command}` needs --data DIR and --out RUN (or --resume RUN)")
    out = Path(cfg.out)
    if (out / "checkpoints").exists() and any((out / "checkpoints").iterdir()):
        raise VlaforgeError(
            f"{out} already holds checkpoints; continue it with --resume {out} or pick another --out"
        )
    overrides: list[Any] = [f"model.{item}" for item in cfg.model]
    train = cfg.train if cfg.steps is None else dataclasses.replace(cfg.train, steps=cfg.steps)
    changed = train_changes(train)
    spec = {
        "command": command,
        "data": list(cfg.data),
        "overrides": overrides + ([changed] if changed else []),
        **extra,
    }
    return spec, out, False


def _resume_spec(cfg: RunCommand, default: RunCommand) -> tuple[dict, Path, bool]:
    out = Path(cfg.resume)
    if not (out / RUN_FILE).exists():
        raise VlaforgeError(f"--resume {out}: not a run directory (no {RUN_FILE})")
    rest = dataclasses.replace(cfg, resume=None, device=default.device, steps=None)
    if rest != default:
        raise VlaforgeError(
            f"--resume {out} takes its settings from {out / RUN_FILE}; only --steps and --device may change"
        )
    spec = json.loads((out / RUN_FILE).read_text())
    if cfg.steps is not None:  # the one thing a resume may change: train longer
        _check_longer(out, cfg.steps)
        spec["overrides"] = spec["overrides"] + [{"train.steps": cfg.steps}]
    return spec, out, True


def _check_longer(out: Path, steps: int) -> None:
    """`--resume RUN --steps N` trains on to N: an N the run has already passed would train nothing
    (and rewrite run.json with the shorter schedule)."""
    from vlaforge.train.checkpoint import checkpoint_step, latest_checkpoint

    last = latest_checkpoint(out / "checkpoints")
    done = checkpoint_step(last) if last else None
    if done is not None and steps < done:
        raise VlaforgeError(
            f"--resume {out}: the run is already at step {done}; --steps {steps} would train nothing"
        )


def train_changes(train: TrainConfig, base: Any = None, prefix: str = "train") -> dict[str, Any]:
    """`{"train.lr": 1e-4, "train.augment.shift": 0}`: the fields of `train` that differ from
    `TrainConfig()`, typed (run.json keeps them as JSON values, never as re-parsed strings)."""
    base = TrainConfig() if base is None else base
    changed: dict[str, Any] = {}
    for f in dataclasses.fields(train):
        value, was = getattr(train, f.name), getattr(base, f.name)
        if dataclasses.is_dataclass(value):
            changed |= train_changes(value, was, f"{prefix}.{f.name}")
        elif value != was:
            changed[f"{prefix}.{f.name}"] = list(value) if isinstance(value, tuple) else value
    return changed
