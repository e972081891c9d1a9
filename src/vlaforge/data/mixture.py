"""Weighted mixtures of window datasets (several robots), with exact resume.

Each batch draws, per sample, a dataset by the normalised `weights` (the batch is then grouped by
dataset: rows of dataset 0 first), then the next samples of that dataset's own shuffled epoch order (sampling without replacement inside an epoch; a new
permutation per epoch). Everything random comes from `seed`: the dataset choice from one numpy
Generator whose state is saved, each epoch's permutation from `(seed, dataset, epoch)`. So
`state_dict()` (generator state + per-dataset epoch and cursor + step) restores the data position
exactly: the batches after `load_state_dict` are identical to an uninterrupted run.

Datasets may differ in action and proprio dimension: `action` and `observation.state` (and
`observation.environment_state`) are zero-padded to the largest dimension, with
`action_dim_mask` / `state_dim_mask` True for real dimensions, and `dataset_index` says which
dataset (embodiment) a sample came from. Datasets with different cameras meet in camera slots
(`vlaforge.data.slots`: the window config maps each dataset's cameras onto the policy's slots; a
missing slot is masked by `camera_mask`). Image keys, image size, history and chunk must agree (a
clear `VlaforgeError` names the disagreement). So must fps, unless `mixed_fps=True`: then every
dataset keeps its own control rate (Octo's practice on Open X-Embodiment: a chunk is H steps of that
robot's clock, and each embodiment is run at its own rate at evaluation); there is no resampling.

Inside a dataset, `sample_weights` (one per window, `task_sample_weights`) reweight the tasks: an
epoch holds each window floor(w) times and once more with probability frac(w), shuffled. So weight 3
shows a task's windows three times per epoch and 0.5 half of them, still without replacement beyond
those copies; the epoch's length follows. It is a sampling lever, not a loss weight: the gradient of
each sample is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vlaforge import keys
from vlaforge.data.dataset import WindowDataset, to_torch
from vlaforge.errors import VlaforgeError, unknown

PADDED = (keys.ACTION, keys.STATE, keys.ENV_STATE)


class MixtureLoader:
    """Infinite iterator of mixed batches; `.stats` is the list of per-dataset stats."""

    def __init__(
        self,
        datasets: Sequence[WindowDataset],
        weights: Sequence[float] | None = None,
        batch_size: int = 64,
        seed: int = 0,
        mixed_fps: bool = False,
        sample_weights: Sequence[np.ndarray | None] | None = None,
    ):
        self.datasets = list(datasets)
        if not self.datasets:
            raise VlaforgeError("a mixture needs at least one dataset")
        self._sample_weights = list(sample_weights or [None] * len(self.datasets))
        for d, w in zip(self.datasets, self._sample_weights, strict=True):
            if w is not None and (w.shape != (len(d),) or not np.all(w > 0)):
                raise VlaforgeError(f"sample weights must be {len(d)} positive numbers, one per window")
        _check_compatible(self.datasets, mixed_fps)
        self.weights = _normalise(weights, len(self.datasets))
        if batch_size < 1:
            raise VlaforgeError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size, self.seed = batch_size, seed
        self.stats = [d.stats for d in self.datasets]
        self.action_dim = max(d.action_dim for d in self.datasets)
        self.state_dim = max(d.state_dim for d in self.datasets)
        self._dims = {k: max(_dim(d, k) for d in self.datasets) for k in PADDED}
        self._rng = np.random.default_rng(seed)
        self._epoch = [0] * len(self.datasets)
        self._cursor = [0] * len(self.datasets)
        self._perm = [self._permutation(i) for i in range(len(self.datasets))]
        self.step = 0
        # Keys every dataset provides: a batch's keys never depend on which datasets it drew from.
        probe = [set(d.gather(np.zeros(1, dtype=np.int64))) for d in self.datasets]
        self._keys = set.intersection(*probe) | {
            keys.DATASET_INDEX,
            keys.ACTION_DIM_MASK,
            keys.STATE_DIM_MASK,
        }

    def _permutation(self, i: int) -> np.ndarray:
        weights = self._sample_weights[i]
        while True:
            rng = np.random.default_rng([self.seed, i, self._epoch[i]])
            if weights is None:
                return rng.permutation(len(self.datasets[i]))
            copies = np.floor(weights).astype(np.int64) + (rng.random(len(weights)) < weights % 1)  # [M]
            if copies.any():  # all weights below 1 can draw an empty epoch: take the next one
                return rng.permutation(np.repeat(np.arange(len(weights)), copies))
            self._epoch[i] += 1

    def _take(self, i: int, count: int) -> np.ndarray:
        """The next `count` sample ids of dataset i, rolling into new epochs as needed."""
        out = []
        while count > 0:
            part = self._perm[i][self._cursor[i] : self._cursor[i] + count]
            out.append(part)
            self._cursor[i] += len(part)
            count -= len(part)
            if self._cursor[i] >= len(self._perm[i]):
                self._epoch[i] += 1
                self._cursor[i] = 0
                self._perm[i] = self._permutation(i)
        return np.concatenate(out)

    def __iter__(self) -> MixtureLoader:
        return self

    def __next__(self) -> dict:
        choice = self._rng.choice(len(self.datasets), size=self.batch_size, p=self.weights)  # [B]
        counts = np.bincount(choice, minlength=len(self.datasets))
        parts = [
            self._padded(i, self.datasets[i].gather(self._take(i, n))) for i, n in enumerate(counts) if n
        ]
        self.step += 1
        merged = _merge(parts)
        return to_torch({k: v for k, v in merged.items() if k in self._keys})

    def _padded(self, i: int, batch: dict) -> dict:
        batch[keys.DATASET_INDEX] = np.full(len(batch[keys.TASK]), i, dtype=np.int64)
        for key in PADDED:
            if key in batch:
                batch[key] = _pad_last(batch[key], self._dims[key])
        n = len(batch[keys.TASK])
        batch[keys.ACTION_DIM_MASK] = _mask(n, self.datasets[i].action_dim, self.action_dim)
        batch[keys.STATE_DIM_MASK] = _mask(n, self.datasets[i].state_dim, self.state_dim)
        return batch

    def state_dict(self) -> dict:
        """The exact data position (JSON-serialisable)."""
        return {
            "seed": self.seed,
            "step": self.step,
            "epoch": list(self._epoch),
            "cursor": list(self._cursor),
            "rng": self._rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict) -> None:
        if state["seed"] != self.seed or len(state["epoch"]) != len(self.datasets):
            raise VlaforgeError(
                "loader state does not match this mixture (different seed or number of datasets)"
            )
        self.step = int(state["step"])
        self._epoch, self._cursor = [int(e) for e in state["epoch"]], [int(c) for c in state["cursor"]]
        self._rng.bit_generator.state = state["rng"]
        self._perm = [self._permutation(i) for i in range(len(self.datasets))]


def _dim(dataset: WindowDataset, key: str) -> int:
    if key == keys.ACTION:
        return dataset.action_dim
    return dataset.obs[key].shape[1] if key in dataset.obs else 0


def _pad_last(x: np.ndarray, dim: int) -> np.ndarray:
    if x.shape[-1] == dim:
        return x
    width = [(0, 0)] * (x.ndim - 1) + [(0, dim - x.shape[-1])]
    return np.pad(x, width)  # [..., dim]


def _mask(n: int, real: int, total: int) -> np.ndarray:
    mask = np.zeros((n, total), dtype=bool)  # [B, D]
    mask[:, :real] = True
    return mask


def _merge(parts: list[dict]) -> dict:
    """Concatenate per-dataset batches (grouped by dataset_index, in dataset order)."""
    if len(parts) == 1:
        return parts[0]
    common = [k for k in parts[0] if all(k in p for p in parts)]
    out = {}
    for key in common:
        if isinstance(parts[0][key], np.ndarray):
            out[key] = np.concatenate([p[key] for p in parts])
        else:
            out[key] = [x for p in parts for x in p[key]]
    return out


def _normalise(weights: Sequence[float] | None, n: int) -> np.ndarray:
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or np.any(w < 0) or w.sum() <= 0:
        raise VlaforgeError(
            f"mixture weights must be {n} non-negative numbers with a positive sum, got {weights}"
        )
    return w / w.sum()


def _check_compatible(datasets: list[WindowDataset], mixed_fps: bool) -> None:
    first = datasets[0]
    for d in datasets[1:]:
        checks = {
            "cameras": (first.image_keys, d.image_keys),
            "image size": (first.image_shape, d.image_shape),
            "window": ((first.window.history, first.window.chunk), (d.window.history, d.window.chunk)),
        }
        for what, (a, b) in checks.items():
            if a != b:
                raise VlaforgeError(
                    f"datasets in a mixture disagree on {what}: {str(first.root)!r} has {a}, {str(d.root)!r} has {b}"
                )
        if first.fps != d.fps and not mixed_fps:
            raise VlaforgeError(
                f"datasets in a mixture have different control rates: {str(first.root)!r} runs at "
                f"{first.fps:g} fps, {str(d.root)!r} at {d.fps:g} fps; train each at its own rate with "
                "--set train.mixed_fps=true (a chunk is then H steps of each robot's own clock)"
            )


def task_sample_weights(
    datasets: Sequence[WindowDataset], weights: dict[str, float]
) -> list[np.ndarray | None]:
    """Per-window weights from task weights: a task is named by its instruction or by the simulator's
    task name in the episode metadata (`metaworld_task`: push-v3, ...); unnamed tasks weigh 1. A name
    found in no dataset is refused, listing the names there are."""
    if not weights:
        return [None] * len(datasets)
    out, seen = [], set()
    for d in datasets:
        per_episode = np.ones(int(d.episode_index.max()) + 1)  # [E] by episode index
        for ep in d.episode_metadata:
            names = set(ep.get("tasks", [])) | {
                v for k, v in ep.items() if k.endswith("_task") and isinstance(v, str)
            }
            seen |= names
            hit = [weights[n] for n in names if n in weights]
            if len(set(hit)) > 1:
                raise VlaforgeError(
                    f"task_weights gives episode {ep['episode_index']} of {d.root} two weights ({names & set(weights)})"
                )
            per_episode[ep["episode_index"]] = hit[0] if hit else 1.0
        out.append(per_episode[d.window_episodes])  # [M]
    missing = sorted(set(weights) - seen)
    if missing:
        raise unknown("task in task_weights", missing[0], sorted(seen))
    return out
