"""`vlaforge pretrain --recipe base`: collect (or reuse) a recipe's mixture, train one generalist on
it, and publish the checkpoint where `finetune --from base` (and `eval --policy base`) find it.

    vlaforge pretrain --recipe base                     # CPU tier: ~2 h on 2 cores after collection
    vlaforge pretrain --recipe base --tier gpu          # same mixture at 128 px, 50 demos per task
    vlaforge pretrain --recipe my_recipe.json --plan    # a recipe file; print the plan and stop
    vlaforge finetune --from base --data DIR --steps 1000 --out RUN
    vlaforge pretrain --recipe base --tier gpu --collect-only && \
      torchrun --nproc_per_node 8 -m vlaforge.cli pretrain --recipe base --tier gpu   # data parallel

Layout under the vlaforge home (`$VLAFORGE_HOME`, else `~/.cache/vlaforge`; `--home` for another):
`data/<recipe>-<tier>/<source>/` (the LeRobot datasets, reused when already collected with the
same options), `runs/<recipe>-<tier>/` (the training run; rerunning the command resumes it, or
trains on when `--steps` asks for more), `pretrained/<name>/` (the published checkpoint, replaced
atomically, with `recipe.json` saying what made it).

Everything is checked before the first episode is collected: the recipe, its tier, every source's
simulator, tasks, robots and cameras, and the training overrides.

A recipe file is JSON: {"name", "description", "sources": [{"name", "simulator", "tasks", "robots",
"weight"}], "tiers": {"cpu": {"episodes_per_task", "image_size", "steps", "batch_size",
"max_minutes"}}, "preset", "cameras"}.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vlaforge.config import apply_overrides, from_dict, option, vlaforge_home
from vlaforge.errors import VlaforgeError
from vlaforge.train.config import TrainConfig, validate
from vlaforge.train.recipes import Recipe, Source, Tier, get_recipe, get_tier

RECIPE_FILE = "recipe.json"


@dataclass(frozen=True)
class PretrainConfig:
    """`vlaforge pretrain`: a generalist from a recipe's mixture, published under a name."""

    recipe: str = "base"
    """A built-in recipe (`base`) or a recipe JSON file (module docstring)."""
    tier: str = "cpu"
    """The recipe's scale: `cpu` (two cores, about two hours) or `gpu` (a CUDA device)."""
    name: str = ""
    """Publish the checkpoint as this name (default: the recipe's name)."""
    home: str = ""
    """The vlaforge home for data, runs and published checkpoints (default: $VLAFORGE_HOME or
    ~/.cache/vlaforge)."""
    episodes_per_task: int | None = None
    """Demonstrations per task (default: the tier's)."""
    steps: int | None = None
    """Optimizer steps (default: the tier's); on a rerun, train on to this step."""
    max_minutes: float | None = None
    """Training wall-clock cap in minutes (default: the tier's; 0 = none)."""
    workers: int = 2
    """Collection worker processes."""
    device: Literal["auto", "cpu", "cuda"] | None = None
    """Training device (default: the tier's)."""
    plan: bool = False
    """Print what would be collected, trained and published, and stop."""
    collect_only: bool = False
    """Collect (or check) the mixture and stop: run this once before a `torchrun` launch."""
    model: tuple[str, ...] = field(default=(), metadata=option(overrides=True))
    """`--set model.<field>=...` on top of the recipe's preset."""
    train: tuple[str, ...] = field(default=(), metadata=option(overrides=True))
    """`--set train.<field>=...` on top of the tier's loop settings."""


@dataclass(frozen=True)
class Plan:
    recipe: Recipe
    tier_name: str
    collects: tuple  # CollectConfig per source
    data: tuple[str, ...]  # DIR:WEIGHT per source
    run: Path
    publish: Path
    train: TrainConfig
    model: tuple[str, ...]
    device: str


def load_recipe(spec: str) -> Recipe:
    """A built-in recipe by name, or a recipe JSON file."""
    path = Path(spec).expanduser()
    if not (spec.endswith(".json") or path.is_file()):
        return get_recipe(spec)
    if not path.is_file():
        raise VlaforgeError(f"--recipe {spec}: no such recipe file")
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise VlaforgeError(f"--recipe {spec}: unreadable recipe file ({err})") from err
    if not isinstance(raw, dict) or not raw.get("sources") or not raw.get("tiers"):
        raise VlaforgeError(f"--recipe {spec}: a recipe needs 'sources' (a list) and 'tiers' (an object)")
    where = f"--recipe {spec}"
    try:
        sources = tuple(
            from_dict(Source, s, where=f"{where}: sources[{i}]") for i, s in enumerate(raw["sources"])
        )
        tiers = {k: from_dict(Tier, v, where=f"{where}: tiers.{k}") for k, v in dict(raw["tiers"]).items()}
    except (TypeError, AttributeError) as err:
        raise VlaforgeError(f"{where}: malformed recipe ({err})") from err
    names = [s.name for s in sources]
    if len(set(names)) != len(names) or any(not n or "/" in n for n in names):
        raise VlaforgeError(f"{where}: source names must be distinct plain directory names, got {names}")
    return Recipe(
        name=str(raw.get("name") or path.stem),
        description=str(raw.get("description", "")),
        sources=sources,
        tiers=tiers,
        preset=str(raw.get("preset", "default")),
        cameras=tuple(raw.get("cameras", ("primary", "wrist"))),
        held_out=str(raw.get("held_out", "")),
    )


def make_plan(cfg: PretrainConfig) -> Plan:
    """Validate everything (recipe, tier, each source's tasks/robots/cameras, overrides) into a plan."""
    from vlaforge.data.collect import CollectConfig, resolve

    recipe = load_recipe(cfg.recipe)
    tier = get_tier(recipe, cfg.tier)
    episodes = cfg.episodes_per_task if cfg.episodes_per_task is not None else tier.episodes_per_task
    home = Path(cfg.home).expanduser() if cfg.home else vlaforge_home()
    data_root = home / "data" / f"{recipe.name}-{cfg.tier}"
    collects = []
    for source in recipe.sources:
        collect = CollectConfig(
            simulator=source.simulator,
            tasks=source.tasks,
            robots=source.robots,
            episodes_per_task=episodes,
            image_size=tier.image_size,
            workers=cfg.workers,
            out=str(data_root / source.name),
            progress=False,
        )
        try:
            resolve(collect)  # unknown simulator, task, robot or camera: refused before collecting
        except VlaforgeError as err:
            raise VlaforgeError(f"recipe {recipe.name!r}, source {source.name!r}: {err}") from err
        collects.append(collect)
    minutes = tier.max_minutes if cfg.max_minutes is None else cfg.max_minutes
    loop = [
        f"train.batch_size={tier.batch_size}",
        f"train.max_minutes={minutes}",
        # a capped tier anneals when its time runs out, however fast the machine is
        *(["train.lr_follows_clock=true"] if minutes > 0 else []),
        "train.mixed_fps=true",
        "train.tensorboard=false",
        *cfg.train,
    ]
    train = validate(apply_overrides(TrainConfig(), [s.removeprefix("train.") for s in loop]))
    train = dataclasses.replace(train, steps=cfg.steps or tier.steps)
    model = (f"cameras=[{','.join(recipe.cameras)}]", f"image_size={tier.image_size}", *cfg.model)
    name = cfg.name or recipe.name
    if "/" in name or not name or name.startswith("."):
        raise VlaforgeError(f"--name {name!r}: a published name is a plain word (e.g. base)")
    return Plan(
        recipe=recipe,
        tier_name=cfg.tier,
        collects=tuple(collects),
        data=tuple(f"{c.out}:{s.weight}" for c, s in zip(collects, recipe.sources, strict=True)),
        run=home / "runs" / f"{recipe.name}-{cfg.tier}",
        publish=home / "pretrained" / name,
        train=train,
        model=model,
        device=cfg.device or tier.device,
    )


def describe(plan: Plan) -> str:
    lines = [f"recipe {plan.recipe.name} ({plan.tier_name} tier): {plan.recipe.description}"]
    for c, s in zip(plan.collects, plan.recipe.sources, strict=True):
        robots = f" --robots {c.robots}" if c.robots else ""
        lines.append(
            f"  collect {c.simulator} --tasks {c.tasks}{robots} --episodes-per-task {c.episodes_per_task} "
            f"--image-size {c.image_size} -> {c.out} (weight {s.weight})"
        )
    t = plan.train
    lines.append(
        f"  train --preset {plan.recipe.preset} {t.steps} steps of batch {t.batch_size} "
        f"(cap {t.max_minutes:g} min) on {plan.device} -> {plan.run}"
    )
    lines.append(f"  publish -> {plan.publish}")
    if plan.recipe.held_out:
        lines.append(f"  held out for transfer: {plan.recipe.held_out}")
    return "\n".join(lines)


def run(cfg: PretrainConfig) -> int:
    """Collect what is missing, train (or resume), publish; returns 0."""
    from vlaforge.data.collect import is_collected
    from vlaforge.data.collect import run as collect

    plan = make_plan(cfg)
    print(describe(plan), file=sys.stderr)
    if cfg.plan:
        return 0
    start = time.perf_counter()
    parallel = int(os.environ.get("WORLD_SIZE", "1")) > 1
    for c in plan.collects:
        if is_collected(c):
            print(f"pretrain: reusing {c.out}", file=sys.stderr)
        elif parallel:  # every process would collect the same episodes into one folder
            raise VlaforgeError(
                f"{c.out} is not collected yet; under torchrun collect first: "
                f"vlaforge pretrain --recipe {cfg.recipe} --tier {cfg.tier} --collect-only"
            )
        else:
            collect(c)
    if cfg.collect_only:
        return 0
    collected = time.perf_counter()
    _train(plan)
    trained = time.perf_counter()
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # rank 0 publishes
    _publish(plan, {"collect_minutes": (collected - start) / 60, "train_minutes": (trained - collected) / 60})
    print(
        f"published: {plan.publish} (fine-tune it: vlaforge finetune --from {plan.publish.name} --data DIR --out RUN)"
    )
    return 0


def _train(plan: Plan) -> None:
    from vlaforge.train.checkpoint import checkpoint_step, latest_checkpoint
    from vlaforge.train.command import TrainCommand, run_train

    device = plan.device
    if (plan.run / "run.json").is_file():
        last = latest_checkpoint(plan.run / "checkpoints")
        done = checkpoint_step(last) if last else None
        if done is not None and done >= plan.train.steps:
            print(f"pretrain: {plan.run} is already at step {done}", file=sys.stderr)
            return
        run_train(TrainCommand(resume=str(plan.run), steps=plan.train.steps, device=device))
        return
    run_train(
        TrainCommand(
            data=plan.data,
            out=str(plan.run),
            preset=plan.recipe.preset,
            steps=plan.train.steps,
            device=device,
            train=plan.train,
            model=plan.model,
        )
    )


def _publish(plan: Plan, timing: dict[str, float]) -> None:
    """Copy the run's last checkpoint to `plan.publish` with recipe.json, replacing it atomically."""
    from vlaforge.train.checkpoint import checkpoint_step, latest_checkpoint

    last = latest_checkpoint(plan.run / "checkpoints")
    if last is None:
        raise VlaforgeError(f"pretrain: {plan.run} has no checkpoint to publish")
    target = plan.publish
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp"
    old = target.parent / f".{target.name}.old"
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    shutil.copytree(last.resolve(), tmp)
    info = {
        "recipe": dataclasses.asdict(plan.recipe),
        "tier": plan.tier_name,
        "datasets": list(plan.data),
        "run": str(plan.run),
        "step": checkpoint_step(last),
        **{k: round(v, 2) for k, v in timing.items()},
    }
    (tmp / RECIPE_FILE).write_text(json.dumps(info, indent=2) + "\n")
    if target.exists():
        target.replace(old)
    tmp.replace(target)
    shutil.rmtree(old, ignore_errors=True)
