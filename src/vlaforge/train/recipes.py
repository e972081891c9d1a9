"""Pretraining recipes: which demonstrations a generalist is pretrained on, and how it trains.

A `Recipe` is a mixture of `Source`s (one scripted collection each: simulator, tasks, robots,
episodes per task, mixture weight) and the training settings, at two `Tier`s:
- `cpu`: what two laptop cores reach in about two hours (64 px, 10 demonstrations per task);
- `gpu`: the same mixture at the scale of the seeds' fine-tuning studies (128 px, 50 per task,
  batch 256), for a machine with a CUDA device (`torchrun` for data parallel, see docs/pretraining.md).

`base` (the only recipe today) follows the foundation-recipe issue: Meta-World ML45's 45 training
tasks (ML45-test's 5 stay held out for transfer), robosuite Lift and Stack on four arms, ALOHA
transfer-cube (insertion stays held out). The issue names Panda and Sawyer; IIWA and Kinova3 join
them (more arms under the same OSC_POSE space for the held-out UR5e to transfer from). Sawyer joined
on 2026-12-04: the transfer study in the README was measured on the mixture without it. Every
policy is the default preset with two camera slots (`primary`, `wrist`), each robot at its own rate
(`train.mixed_fps`).
"""

from __future__ import annotations

from dataclasses import dataclass

from vlaforge.errors import VlaforgeError, did_you_mean


@dataclass(frozen=True)
class Source:
    """One dataset of the mixture: `vlaforge collect <simulator> --tasks ... --robots ...`."""

    name: str  # the dataset's directory name under the recipe's data folder
    simulator: str
    tasks: str  # anything `collect --tasks` takes (suites, comma lists)
    robots: str = ""
    weight: float = 1.0  # mixture weight (normalised over the sources)


@dataclass(frozen=True)
class Tier:
    """Scale settings: demonstrations, frame size and the training loop."""

    episodes_per_task: int
    image_size: int
    steps: int
    batch_size: int
    max_minutes: float  # a wall-clock cap (0 = none); the cosine follows it (train.lr_follows_clock)
    device: str = "auto"


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    sources: tuple[Source, ...]
    tiers: dict[str, Tier]
    preset: str = "default"
    cameras: tuple[str, ...] = ("primary", "wrist")
    held_out: str = ""  # what the recipe keeps out of pretraining, for transfer studies


RECIPES: dict[str, Recipe] = {
    "base": Recipe(
        name="base",
        description="ML45-train (45 tasks) + robosuite Lift/Stack on Panda, Sawyer, IIWA, Kinova3 + ALOHA transfer-cube",
        sources=(
            Source("metaworld-ml45-train", "metaworld", "ml45-train", weight=0.6),
            Source(
                "robosuite-lift-stack",
                "robosuite",
                "lift,stack",
                robots="Panda,Sawyer,IIWA,Kinova3",
                weight=0.25,
            ),
            Source("aloha-transfer-cube", "aloha", "transfer-cube", weight=0.15),
        ),
        tiers={
            # ~110 samples/s at 64 px on 2 cores: 12,000 steps of 64 is ~2 h (the cap stops it there)
            "cpu": Tier(episodes_per_task=10, image_size=64, steps=12_000, batch_size=64, max_minutes=120),
            "gpu": Tier(
                episodes_per_task=50,
                image_size=128,
                steps=60_000,
                batch_size=256,
                max_minutes=0,
                device="cuda",
            ),
        },
        held_out="ML45-test (bin-picking, box-close, hand-insert, door-lock, door-unlock), robosuite UR5e, ALOHA insertion",
    ),
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise VlaforgeError(
            f"unknown recipe {name!r}{did_you_mean(name, list(RECIPES))}; recipes: {', '.join(RECIPES)}"
        )
    return RECIPES[name]


def get_tier(recipe: Recipe, tier: str) -> Tier:
    if tier not in recipe.tiers:
        raise VlaforgeError(
            f"recipe {recipe.name!r} has no tier {tier!r}{did_you_mean(tier, list(recipe.tiers))}; "
            f"tiers: {', '.join(recipe.tiers)}"
        )
    return recipe.tiers[tier]
