"""Per-dataset normalization of actions and proprio, kept in the policy as buffers.

One affine map per (dataset_index, dimension): `n = (x - center) / scale`, inverse `x = n * scale +
center`, with

- `mean_std`: center = mean, scale = std;
- `bounds`:   center = (q01 + q99) / 2, scale = (q99 - q01) / 2, then n is clipped to [-1, 1]
  (OpenVLA; q01/q99 fall back to min/max when a stats dict lacks them);
- a dimension listed as raw (e.g. a gripper already in [-1, 1]), or one the stats do not cover
  (padding of a smaller robot in a mixture), or with no stats at all: center 0, scale 1, no clip;
- a constant dimension (scale < 1e-6): scale 1, so it maps to x - center (0 for the constant) and
  back exactly; no division blow-up.

The buffers (`center`, `scale`, `clip`, each [K, D] for K datasets) are persistent, so they travel in
model.safetensors; the raw stats also go to stats.json next to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from vlaforge.errors import VlaforgeError

EPS = 1e-6


class Normalizer(nn.Module):
    """Normalize / unnormalize one feature (e.g. "action") per dataset_index."""

    def __init__(
        self,
        key: str,
        dim: int,
        stats: Sequence[dict[str, Any]] | None,
        mode: str,
        raw_dims: Sequence[int] = (),
    ) -> None:
        super().__init__()
        self.key, self.dim, self.mode = key, dim, mode
        stats = [stats] if isinstance(stats, dict) else stats  # one dataset's dict is accepted too
        rows = [_affine(s.get(key) if s else None, dim, mode, raw_dims) for s in (stats or [None])]
        self.register_buffer("center", torch.stack([r[0] for r in rows]))  # [K, D]
        self.register_buffer("scale", torch.stack([r[1] for r in rows]))  # [K, D]
        self.register_buffer("clip", torch.stack([r[2] for r in rows]))  # [K, D] bool

    @property
    def num_datasets(self) -> int:
        return self.center.shape[0]

    def _rows(self, x: torch.Tensor, dataset_index: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """center/scale/clip for each batch row, shaped to broadcast against x [B, ..., D]."""
        if dataset_index is None:
            dataset_index = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        idx = dataset_index.long().to(self.center.device)
        if idx.numel() and int(idx.max()) >= self.num_datasets:
            raise VlaforgeError(
                f"dataset_index {int(idx.max())} but the policy has stats for {self.num_datasets} dataset(s)"
            )
        shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (self.dim,)
        return tuple(b[idx].reshape(shape) for b in (self.center, self.scale, self.clip))

    def normalize(self, x: torch.Tensor, dataset_index: torch.Tensor | None = None) -> torch.Tensor:
        """Robot units [B, ..., D] -> normalized [B, ..., D]."""
        center, scale, clip = self._rows(x, dataset_index)
        n = (x - center) / scale
        return torch.where(clip, n.clamp(-1.0, 1.0), n)

    def unnormalize(self, n: torch.Tensor, dataset_index: torch.Tensor | None = None) -> torch.Tensor:
        """Normalized [B, ..., D] -> robot units [B, ..., D] (bounds: n is clipped to [-1, 1] first)."""
        center, scale, clip = self._rows(n, dataset_index)
        n = torch.where(clip, n.clamp(-1.0, 1.0), n)
        return n * scale + center


def _vector(stats: dict[str, Any], name: str) -> np.ndarray:
    if stats.get(name) is None:
        raise VlaforgeError(f"normalization stats lack {name!r} (have: {sorted(stats)})")
    return np.asarray(stats[name], dtype=np.float64).reshape(-1)


def _affine(
    stats: dict[str, Any] | None, dim: int, mode: str, raw_dims: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(center [D], scale [D], clip [D]) for one dataset's stats of one feature."""
    center, scale, clip = np.zeros(dim), np.ones(dim), np.zeros(dim, dtype=bool)
    if stats:
        if mode == "bounds":
            lo = _vector(stats, "q01") if "q01" in stats else _vector(stats, "min")
            hi = _vector(stats, "q99") if "q99" in stats else _vector(stats, "max")
            c, s = (lo + hi) / 2, (hi - lo) / 2
        else:
            c, s = _vector(stats, "mean"), _vector(stats, "std")
        n = min(dim, c.shape[0])  # stats of a smaller robot cover its first n dims
        center[:n], scale[:n], clip[:n] = c[:n], s[:n], mode == "bounds"
    degenerate = scale < EPS
    scale[degenerate] = 1.0
    for d in raw_dims:
        center[d], scale[d], clip[d] = 0.0, 1.0, False
    as_t = lambda a: torch.as_tensor(a, dtype=torch.float32)
    return as_t(center), as_t(scale), torch.as_tensor(clip)


def jsonable_stats(stats: Sequence[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Stats as plain JSON (numpy arrays and tensors become lists) for stats.json."""

    def convert(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: convert(x) for k, x in v.items()}
        if isinstance(v, (np.ndarray, torch.Tensor)):
            return np.asarray(v).tolist()
        if isinstance(v, (np.floating, np.integer)):
            return v.item()
        if isinstance(v, (list, tuple)):
            return [convert(x) for x in v]
        return v

    return [convert(dict(s)) for s in (stats or [])]
