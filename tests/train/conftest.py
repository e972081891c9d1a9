"""Fixtures for the trainer tests: tiny LeRobot v3 datasets (random frames, written once per session)."""

from __future__ import annotations

import pytest
from train_helpers import write_dataset


@pytest.fixture(scope="session")
def pretrain_data(tmp_path_factory):
    """4 episodes x 24 frames, 4-d action and state, camera corner2."""
    root = tmp_path_factory.mktemp("data") / "pretrain"
    write_dataset(root, episodes=4, length=24, action_dim=4, state_dim=4, seed=1)
    return root


@pytest.fixture(scope="session")
def new_robot_data(tmp_path_factory):
    """Another robot: 6-d action, 5-d state, 3 episodes."""
    root = tmp_path_factory.mktemp("data") / "new_robot"
    write_dataset(root, episodes=3, length=20, action_dim=6, state_dim=5, seed=2, task="push the block")
    return root


@pytest.fixture(scope="session")
def pretrained_ckpt(pretrain_data, tmp_path_factory):
    """A tiny policy trained 2 steps on `pretrain_data`: RUN/checkpoints/last."""
    from train_helpers import FAST_TRAIN, TINY_MODEL

    from vlaforge.train.setup import execute

    out = tmp_path_factory.mktemp("runs") / "pretrain"
    spec = {
        "command": "train",
        "preset": None,
        "data": [str(pretrain_data)],
        "overrides": TINY_MODEL + FAST_TRAIN + ["train.steps=2", "train.batch_size=4"],
    }
    assert execute(spec, out, False, device="cpu") == 0
    return out / "checkpoints" / "last"
