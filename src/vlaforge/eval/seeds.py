"""Evaluation seeds, and the check that none of them was used to collect the training data.

Eval seeds come from a range that collection never uses: `vlaforge collect` draws 31-bit episode
seeds (`[0, 2**31)`, `vlaforge.data.collect.episode_seed`), evaluation uses seeds from `2**31` up:
`--seed S` selects `[2**31 + S * 100_000, ...)`, the same seeds for every task, so results are
reproducible and comparable across policies. The check against the checkpoint's recorded training
seeds below still runs, for datasets collected by other means.

Training seeds come from the checkpoint record (`policy.record.train_seeds`, written by the trainer
into metadata.json); the training dataset is never reopened. Metadata dicts of other origin may list
seeds under `train_seeds`/`seeds`/`episode_seeds`: a list, a dict task -> list, or per-episode
records (`{"task", "seed"}`). A seed recorded without a task counts for every task (conservative).
Datasets name tasks by their instruction (LeRobot's `tasks`), so a recorded task matches an eval task
by its name or by its instruction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from vlaforge.errors import VlaforgeError

EVAL_SEED_BASE = 2**31  # eval seeds start here; collection seeds are 31-bit, i.e. below it
EVAL_SEED_STRIDE = 100_000  # --seed S selects the block [BASE + S * STRIDE, BASE + (S + 1) * STRIDE)
_SEED_KEYS = ("train_seeds", "seeds", "episode_seeds")

Pair = tuple[str | None, int]  # (task or None for "any task", seed)


def eval_seeds(seed: int, episodes: int) -> list[int]:
    """The deterministic eval seeds for block `seed`, above every seed collection draws."""
    if not 0 <= episodes <= EVAL_SEED_STRIDE:
        raise VlaforgeError(f"episodes per task must be between 0 and {EVAL_SEED_STRIDE}, got {episodes}")
    if seed < 0:
        raise VlaforgeError(f"--seed must be >= 0, got {seed}")
    start = EVAL_SEED_BASE + seed * EVAL_SEED_STRIDE
    return list(range(start, start + episodes))


def _pairs_from_value(value: Any, task: str | None = None) -> set[Pair]:
    """Seeds in any of the accepted shapes: int, list, dict task -> list, episode records."""
    if isinstance(value, bool):
        return set()
    if isinstance(value, int):
        return {(task, value)}
    if isinstance(value, dict):
        if "seed" in value:
            t = value.get("task") or task
            return {(t if isinstance(t, str) else None, int(value["seed"]))}
        return {p for k, v in value.items() for p in _pairs_from_value(v, str(k))}
    if isinstance(value, (list, tuple)):
        return {p for v in value for p in _pairs_from_value(v, task)}
    return set()


@dataclass(frozen=True)
class TrainSeeds:
    """The (task, seed) pairs of the training episodes, or None when they are not known."""

    pairs: frozenset[Pair] | None
    source: str  # where they came from, for the report
    applicable: bool = True  # False for scripted policies, which were not trained on data

    @classmethod
    def unknown(cls, why: str = "no training seeds recorded") -> TrainSeeds:
        return cls(None, why)

    @classmethod
    def not_applicable(cls, what: str) -> TrainSeeds:
        return cls(frozenset(), f"{what}: no training data", applicable=False)

    @classmethod
    def from_record(cls, record: Any, metadata: dict | None = None) -> TrainSeeds:
        """The seeds of a checkpoint record (`CheckpointRecord.train_seeds`), else those its metadata lists."""
        pairs = record.train_seeds if record is not None else None
        if pairs:
            return cls(frozenset(tuple(p) for p in pairs), "checkpoint record (train_seeds)")
        return cls.from_metadata(metadata)

    @classmethod
    def from_metadata(cls, metadata: dict | None) -> TrainSeeds:
        """Seeds listed in a metadata dict (checkpoint metadata.json, a server's metadata)."""
        metadata = metadata or {}
        for key in _SEED_KEYS:
            if key in metadata:
                return cls(frozenset(_pairs_from_value(metadata[key])), f"checkpoint metadata[{key!r}]")
        return cls.unknown("the checkpoint metadata records no training seeds")

    def overlap(
        self, tasks: Iterable[str], seeds: Iterable[int], instructions: Mapping[str, str] | None = None
    ) -> list[Pair]:
        """Eval (task, seed) pairs used in training; a recorded task may be the name or its instruction."""
        if not self.pairs:
            return []
        seeds = list(seeds)
        hits = []
        for t in tasks:
            names = {t, (instructions or {}).get(t), None}
            hits += [(t, s) for s in seeds if any((n, s) in self.pairs for n in names)]
        return sorted(hits, key=lambda p: (p[0] or "", p[1]))

    def check(
        self,
        tasks: list[str],
        seeds: list[int],
        *,
        allow: bool,
        instructions: Mapping[str, str] | None = None,
    ) -> dict:
        """A report entry; raises VlaforgeError on overlap unless `allow`."""
        if not self.applicable:
            return {"status": "not-applicable", "source": self.source, "overlap": []}
        if self.pairs is None:
            return {"status": "unknown", "source": self.source, "overlap": []}
        overlap = self.overlap(tasks, seeds, instructions)
        if overlap and not allow:
            shown = ", ".join(f"{t or '*'}:{s}" for t, s in overlap[:5])
            raise VlaforgeError(
                f"{len(overlap)} eval (task, seed) pairs were used for training ({shown}...); "
                "pick another --seed or pass --allow-train-seeds"
            )
        status = "overlap-allowed" if overlap else "disjoint"
        return {
            "status": status,
            "source": self.source,
            "overlap": [list(p) for p in overlap],
            "train_pairs": len(self.pairs),
        }
