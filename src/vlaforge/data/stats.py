"""Feature statistics in LeRobot's layout: min, max, mean, std, count, q01, q10, q50, q90, q99.

Shapes follow LeRobot v3.0 (`compute_stats.py`): a numeric feature of shape `[D]` has stats of shape
`[D]` (a scalar column `[1]`); images/videos have per-channel stats of shape `[3, 1, 1]` in [0, 1];
`count` is `[n]` (frames). `min`/`max` keep the feature dtype (int64, bool), the rest is float64.

Deviations from LeRobot 0.4.4, on purpose:
- Quantiles are exact (numpy's linear interpolation), not LeRobot's 5,000-bin histogram estimate.
- Image stats use every frame of an episode (LeRobot samples ~100) and are computed from exact
  256-bin histograms; the std is right (LeRobot squares uint8 pixels, which overflows, and its image
  std comes out ~0).
- Aggregating episodes: min/max/mean/std are exact (parallel-variance formula, as LeRobot); numeric
  quantiles in meta/stats.json are recomputed exactly over all frames by the writer; image quantiles
  are the count-weighted mean of the episodes' quantiles (LeRobot's own aggregation rule).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
QUANTILE_KEYS = tuple(f"q{int(round(q * 100)):02d}" for q in QUANTILES)
STAT_KEYS = ("min", "max", "mean", "std", "count", *QUANTILE_KEYS)

Stats = dict[str, np.ndarray]


def numeric_stats(values: np.ndarray) -> Stats:
    """Stats over axis 0 of `[N, ...]` values (a 1-d column gives shape `[1]` stats)."""
    values = np.asarray(values)
    if values.ndim == 1:
        values = values[:, None]  # [N, 1]
    as_float = values.astype(np.float64)
    stats = {
        "min": values.min(axis=0),
        "max": values.max(axis=0),
        "mean": as_float.mean(axis=0),
        "std": as_float.std(axis=0),
        "count": np.array([len(values)], dtype=np.int64),
    }
    quantiles = np.quantile(as_float, QUANTILES, axis=0)  # [5, ...]
    stats.update(zip(QUANTILE_KEYS, quantiles, strict=True))
    return stats


def image_histograms(frames: np.ndarray) -> np.ndarray:
    """Per-channel 256-bin pixel counts of uint8 `[T, H, W, C]` frames -> int64 `[C, 256]`."""
    channels = frames.shape[-1]
    return np.stack([np.bincount(frames[..., c].ravel(), minlength=256) for c in range(channels)])


def image_stats(frames: np.ndarray) -> Stats:
    """Per-channel stats of uint8 `[T, H, W, C]` frames, scaled to [0, 1], each of shape `[C, 1, 1]`."""
    stats = histogram_stats(image_histograms(frames))
    stats["count"] = np.array([len(frames)], dtype=np.int64)
    return stats


def histogram_stats(hist: np.ndarray) -> Stats:
    """Exact stats of uint8 data given as `[C, 256]` counts, scaled to [0, 1], shape `[C, 1, 1]`."""
    levels = np.arange(256, dtype=np.float64)
    n = hist.sum(axis=1).astype(np.float64)  # [C]
    mean = hist @ levels / n
    var = hist @ levels**2 / n - mean**2
    nonzero = hist > 0
    out = {
        "min": nonzero.argmax(axis=1).astype(np.float64),
        "max": 255 - nonzero[:, ::-1].argmax(axis=1).astype(np.float64),
        "mean": mean,
        "std": np.sqrt(np.maximum(var, 0.0)),
    }
    for key, q in zip(QUANTILE_KEYS, QUANTILES, strict=True):
        out[key] = np.array([_hist_quantile(h, q) for h in hist])
    stats = {k: (v / 255.0).reshape(-1, 1, 1) for k, v in out.items()}
    stats["count"] = np.array([int(n[0])], dtype=np.int64)
    return stats


def _hist_quantile(hist: np.ndarray, q: float) -> float:
    """numpy's 'linear' quantile of the sorted data that a 256-bin histogram describes."""
    cumsum = np.cumsum(hist)
    pos = q * (cumsum[-1] - 1)
    lo = int(np.floor(pos))
    lo_value = np.searchsorted(cumsum, lo, side="right")
    hi_value = np.searchsorted(cumsum, min(lo + 1, cumsum[-1] - 1), side="right")
    return float(lo_value + (pos - lo) * (hi_value - lo_value))


def aggregate(stats_list: Sequence[Stats]) -> Stats:
    """Combine per-episode stats of one feature: exact min/max/mean/std, count-weighted quantiles."""
    counts = np.array([s["count"][0] for s in stats_list], dtype=np.float64)  # [E]
    total = counts.sum()
    shape = (-1,) + (1,) * np.asarray(stats_list[0]["mean"]).ndim
    weights = (counts / total).reshape(shape)
    means = np.stack([s["mean"] for s in stats_list])
    mean = (means * weights).sum(axis=0)
    variances = np.stack([np.asarray(s["std"], np.float64) ** 2 for s in stats_list])
    var = ((variances + (means - mean) ** 2) * weights).sum(axis=0)
    out = {
        "min": np.min(np.stack([s["min"] for s in stats_list]), axis=0),
        "max": np.max(np.stack([s["max"] for s in stats_list]), axis=0),
        "mean": mean,
        "std": np.sqrt(var),
        "count": np.array([int(total)], dtype=np.int64),
    }
    for key in QUANTILE_KEYS:
        out[key] = (np.stack([s[key] for s in stats_list]) * weights).sum(axis=0)
    return out


def to_json(stats: dict[str, Stats]) -> dict[str, dict[str, list]]:
    """Nested lists for meta/stats.json (bool/int min/max stay bool/int)."""
    return {feat: {k: np.asarray(v).tolist() for k, v in s.items()} for feat, s in stats.items()}


def from_json(data: dict[str, dict[str, list]]) -> dict[str, Stats]:
    """meta/stats.json (or a flattened episodes row) -> numpy arrays."""
    return {feat: {k: np.asarray(v) for k, v in s.items()} for feat, s in data.items()}
