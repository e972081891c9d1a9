"""Fixtures for model tests: tiny configs, fake batches and stats (no data on disk needed)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vlaforge import keys
from vlaforge.models.config import ImageEncoderConfig, PolicyConfig, TrunkConfig
from vlaforge.models.heads import HeadConfig

TASKS = ["reach the goal", "open the drawer"]


def tiny_config(kind: str = "regression", **fields) -> PolicyConfig:
    """A fast policy config: 32 px, 16 tokens per frame, 2 x 32 trunk, chunk 4, history 2."""
    base = PolicyConfig(
        image_size=32, image=ImageEncoderConfig(stem_channels=(8, 8), patch_size=8, norm_groups=4),
        history=2, chunk=4, execute_steps=2, normalization="bounds" if kind == "tokens" else "mean_std",
        trunk=TrunkConfig(width=32, depth=2, heads=4),
        head=HeadConfig(kind=kind, hidden_dim=32, num_blocks=1, expert_width=32, expert_depth=1, sample_steps=4,
                        flow_steps=4),
    )  # fmt: skip
    return dataclasses.replace(base, **fields)


def fake_batch(cfg: PolicyConfig, batch: int = 2, frame: int | None = None, seed: int = 0) -> dict:
    """A training batch for `cfg` (keys of vlaforge.keys), robot units, reproducible by seed."""
    g = torch.Generator().manual_seed(seed)
    size, t = frame or cfg.image_size, cfg.history
    out = {
        keys.image_key(c): torch.randint(0, 256, (batch, t, size, size, 3), generator=g, dtype=torch.uint8)
        for c in cfg.cameras
    }
    out[keys.STATE] = torch.randn(batch, t, cfg.state_dim, generator=g) * 0.3 + 0.5
    out[keys.ACTION] = (torch.rand(batch, cfg.chunk, cfg.action_dim, generator=g) * 2 - 1) * 0.9
    out[keys.TASK] = [TASKS[i % len(TASKS)] for i in range(batch)]
    out[keys.OBS_IS_PAD] = torch.zeros(batch, t, dtype=torch.bool)
    out[keys.ACTION_IS_PAD] = torch.zeros(batch, cfg.chunk, dtype=torch.bool)
    return out


def fake_stats(action_dim: int = 4, state_dim: int = 4, shift: float = 0.0) -> dict:
    """One dataset's LeRobot-style stats for action and state."""

    def feature(d: int) -> dict:
        mean = torch.linspace(-0.2, 0.3, d) + shift
        return {"mean": mean.tolist(), "std": [0.5] * d, "min": (mean - 1.5).tolist(), "max": (mean + 1.5).tolist(),
                "q01": (mean - 1.0).tolist(), "q99": (mean + 1.0).tolist()}  # fmt: skip

    return {keys.ACTION: feature(action_dim), keys.STATE: feature(state_dim)}


@pytest.fixture
def stats() -> list[dict]:
    return [fake_stats()]


@pytest.fixture(name="tiny_config")
def _tiny_config_fixture():
    """The `tiny_config(kind, **fields)` factory."""
    return tiny_config


@pytest.fixture(name="fake_batch")
def _fake_batch_fixture():
    """The `fake_batch(cfg, batch, frame, seed)` factory."""
    return fake_batch


@pytest.fixture(name="make_stats")
def _make_stats_fixture():
    """The `fake_stats(action_dim, state_dim, shift)` factory."""
    return fake_stats
