"""Training windows over a LeRobot v3.0 dataset: observation history + action chunk, vectorised.

A sample is anchored at one frame `t` of an episode:

    images / observation.*   frames t-history+1 .. t      [T = history]
    action                   frames t .. t+chunk-1        [H = chunk]

Before the episode start the history repeats the first frame and `observation_is_pad` is True;
after the episode end the chunk repeats the last action and `action_is_pad` is True (LeRobot's
`delta_timestamps` semantics, clamped indices + `*_is_pad`). `sample_batch(indices)` gathers a
whole batch with one fancy-indexing call per key from arrays held in RAM (numeric features) and a
memory-mapped uint8 frame cache (videos, decoded once; see `frame_cache`). No video is decoded
in the training loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from vlaforge import keys
from vlaforge.data.frame_cache import cached_frames
from vlaforge.data.reader import LeRobotV3Dataset
from vlaforge.errors import VlaforgeError, unknown

OBS_KEYS = (keys.STATE, keys.ENV_STATE)


@dataclasses.dataclass(frozen=True)
class WindowConfig:
    """What one training sample holds."""

    history: int = 2
    """Observation frames per sample (t-history+1 .. t); Octo's window 2."""
    chunk: int = 16
    """Actions per sample (t .. t+chunk-1), the policy's action horizon."""
    cameras: tuple[str, ...] | None = None
    """Camera names (`corner2`) or keys to load; None = every video of the dataset."""
    image_size: int | None = None
    """Resize cached frames to image_size x image_size once, at cache time; None = stored size."""
    slots: tuple[tuple[str, str | None], ...] | None = None
    """Camera slots (`vlaforge.data.slots.map_slots`): (slot, camera or None) pairs. When given,
    frames come out under `observation.images.<slot>` (instead of `cameras`), a missing slot as
    black frames, and every batch has `camera_mask` [B, C] (False = missing slot)."""


def split_episodes(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split episode ids 0..n-1 into (train, val) by a seeded shuffle; both sorted.

    With `val_fraction > 0` and n >= 2 at least one episode goes to val and one stays in train.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise VlaforgeError(f"val_fraction must be in [0, 1), got {val_fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = 0 if val_fraction == 0 or n < 2 else min(n - 1, max(1, round(n * val_fraction)))
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


class WindowDataset:
    """History/chunk windows over (a subset of the episodes of) one dataset."""

    def __init__(
        self,
        root: str | Path,
        window: WindowConfig | None = None,
        episodes: Sequence[int] | None = None,
        cache_dir: str | Path | None = None,
    ):
        window = window or WindowConfig()
        if window.history < 1 or window.chunk < 1:
            raise VlaforgeError(f"history and chunk must be >= 1, got {window.history} and {window.chunk}")
        self.window = window
        self.source = LeRobotV3Dataset(root)
        self.root = self.source.root
        self.fps = self.source.fps
        self.tasks = self.source.tasks
        self.stats = self.source.stats
        slots = window.slots
        self._slots = slots
        self.camera_keys = self._select_cameras(
            tuple(c for _, c in slots if c is not None) if slots is not None else window.cameras
        )
        self._episode_ids = self._check_episodes(episodes)
        self.episode_metadata = [self.source.episodes[i] for i in self._episode_ids]
        self._load_arrays(cache_dir)

    def _select_cameras(self, cameras: tuple[str, ...] | None) -> list[str]:
        if cameras is None:
            return list(self.source.camera_keys)
        wanted = [c if c.startswith(keys.IMAGE_PREFIX) else keys.image_key(c) for c in cameras]
        for key in wanted:
            if key not in self.source.camera_keys:
                names = [keys.camera_of(k) for k in self.source.camera_keys]
                raise unknown(f"camera in dataset {str(self.root)!r}", keys.camera_of(key), names)
        return wanted

    def _check_episodes(self, episodes: Sequence[int] | None) -> list[int]:
        n = self.source.num_episodes
        ids = list(range(n)) if episodes is None else sorted({int(e) for e in episodes})
        bad = [e for e in ids if not 0 <= e < n]
        if bad or not ids:
            raise VlaforgeError(f"episodes {bad or '[]'} are not in dataset {str(self.root)!r} (0..{n - 1})")
        return ids

    def _load_arrays(self, cache_dir: str | Path | None) -> None:
        src = self.source
        self.action = src.column(keys.ACTION).astype(np.float32)  # [N, A]
        self.obs = {k: src.column(k).astype(np.float32) for k in OBS_KEYS if k in src.features}  # [N, D]
        self.task_index = src.column("task_index")[:, 0]  # [N]
        self.frame_index = src.column("frame_index")[:, 0]  # [N]
        self.episode_index = src.column("episode_index")[:, 0]  # [N]
        size = (self.window.image_size,) * 2 if self.window.image_size else None
        self.frames = {k: cached_frames(src, k, size=size, cache_dir=cache_dir) for k in self.camera_keys}
        starts = np.array([ep["dataset_from_index"] for ep in src.episodes])
        ends = np.array([ep["dataset_to_index"] for ep in src.episodes])
        self._ep_start = starts[self.episode_index]  # [N] first row of each frame's episode
        self._ep_end = ends[self.episode_index]  # [N] one past the last row
        self._anchors = np.concatenate([np.arange(starts[e], ends[e]) for e in self._episode_ids])  # [M]

    @property
    def action_dim(self) -> int:
        return self.action.shape[1]

    @property
    def state_dim(self) -> int:
        return self.obs[keys.STATE].shape[1] if keys.STATE in self.obs else 0

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        """(H, W, 3) of the cached frames (after `image_size`), None without cameras."""
        return next((tuple(f.shape[1:]) for f in self.frames.values()), None)

    @property
    def image_keys(self) -> list[str]:
        """The image keys of a batch: one per slot with `slots`, else the selected camera keys."""
        if self._slots is None:
            return list(self.camera_keys)
        return [keys.image_key(slot) for slot, _ in self._slots]

    def __len__(self) -> int:
        return len(self._anchors)

    @property
    def window_episodes(self) -> np.ndarray:
        """The episode index of each window (sample id 0..len-1)."""
        return self.episode_index[self._anchors]  # [M]

    def sample_batch(self, indices: Sequence[int] | np.ndarray) -> dict:
        """The batch for samples `indices` (0..len-1), keys and shapes per `vlaforge.keys`."""
        return to_torch(self.gather(indices))

    def gather(self, indices: Sequence[int] | np.ndarray) -> dict:
        """`sample_batch` as numpy arrays (the mixture pads and concatenates before torch)."""
        rows = self._anchors[np.asarray(indices, dtype=np.int64)]  # [B]
        start, end = self._ep_start[rows][:, None], self._ep_end[rows][:, None]  # [B, 1]
        hist = rows[:, None] + np.arange(1 - self.window.history, 1)  # [B, T]
        chunk = rows[:, None] + np.arange(self.window.chunk)  # [B, H]
        obs_pad, act_pad = hist < start, chunk >= end  # [B, T], [B, H]
        hist, chunk = np.maximum(hist, start), np.minimum(chunk, end - 1)
        batch: dict = self._images(hist)  # key -> [B, T, H, W, C]
        batch.update({k: v[hist] for k, v in self.obs.items()})  # [B, T, D]
        batch[keys.ACTION] = self.action[chunk]  # [B, H, A]
        batch[keys.OBS_IS_PAD] = obs_pad
        batch[keys.ACTION_IS_PAD] = act_pad
        batch[keys.TASK] = [self.tasks[i] for i in self.task_index[rows]]
        batch[keys.DATASET_INDEX] = np.zeros(len(rows), dtype=np.int64)
        batch["episode_index"] = self.episode_index[rows]
        batch["frame_index"] = self.frame_index[rows]
        return batch

    def _images(self, hist: np.ndarray) -> dict:
        """Frames of the history rows `hist` [B, T]: per camera, or per slot (+ `camera_mask`)."""
        if self._slots is None:
            return {k: np.take(f, hist, axis=0) for k, f in self.frames.items()}  # [B, T, H, W, C]
        out: dict = {}
        shape = (*hist.shape, *self.image_shape)
        for slot, camera in self._slots:
            key = keys.image_key(slot)
            frames = self.frames[keys.image_key(camera)] if camera is not None else None
            out[key] = np.take(frames, hist, axis=0) if frames is not None else np.zeros(shape, np.uint8)
        present = np.array([camera is not None for _, camera in self._slots])  # [C]
        out[keys.CAMERA_MASK] = np.broadcast_to(present, (len(hist), len(present))).copy()  # [B, C]
        return out


def to_torch(batch: dict) -> dict:
    """numpy arrays -> torch tensors (zero-copy); lists (the task strings) stay lists."""
    return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in batch.items()}
