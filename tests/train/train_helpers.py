"""Helpers for the trainer tests: tiny datasets, tiny policy overrides, an in-memory loader."""

from __future__ import annotations

import numpy as np

TINY_MODEL = [
    "model.image_size=32",
    "model.image.stem_channels=[8,8]",
    "model.image.patch_size=8",
    "model.image.norm_groups=4",
    "model.trunk.width=32",
    "model.trunk.depth=1",
    "model.trunk.heads=2",
    "model.history=2",
    "model.chunk=4",
    "model.execute_steps=2",
    "model.head.kind=regression",
    "model.head.hidden_dim=32",
    "model.head.num_blocks=1",
]
"""A ~30k-parameter policy at 32 px (the frozen text encoder is loaded but not trained)."""

FAST_TRAIN = ["train.tensorboard=false", "train.warmup_steps=2", "train.log_every=1", "train.val_batches=1"]


def write_dataset(
    root,
    *,
    episodes: int,
    length: int,
    action_dim: int,
    state_dim: int,
    seed: int,
    camera: str = "corner2",
    size: int = 32,
    task: str = "reach the goal",
) -> None:
    """A LeRobot v3 dataset of random-walk episodes; each episode records its env seed."""
    from vlaforge.data.lerobot_v3 import LeRobotWriter

    rng = np.random.default_rng(seed)
    features = {
        f"observation.images.{camera}": {
            "dtype": "video",
            "shape": [size, size, 3],
            "names": ["height", "width", "channels"],
        },
        "observation.state": {"dtype": "float32", "shape": [state_dim], "names": None},
        "action": {"dtype": "float32", "shape": [action_dim], "names": None},
    }
    writer = LeRobotWriter(root, fps=10, robot_type="test", features=features)
    for ep in range(episodes):
        action = np.cumsum(rng.normal(0, 0.1, (length, action_dim)), 0).astype(np.float32)
        state = np.cumsum(rng.normal(0, 0.1, (length, state_dim)), 0).astype(np.float32)
        frames = rng.integers(0, 255, (length, size, size, 3), dtype=np.uint8)
        writer.add_episode(
            {f"observation.images.{camera}": frames, "observation.state": state, "action": action},
            task=task,
            metadata={"seed": seed * 100 + ep},
        )
    writer.finalize()


class ListLoader:
    """An in-memory stand-in for `MixtureLoader` in the trainer-level tests: a seeded, endless
    stream of batches with an exact `state_dict` (the position), so the loop is tested alone."""

    def __init__(
        self, batch_size: int, seed: int = 0, action_dim: int = 4, state_dim: int = 4, size: int = 32
    ):
        self.batch_size, self.seed, self.position = batch_size, seed, 0
        self.dims = (action_dim, state_dim, size)

    def batch(self, i: int) -> dict:
        import torch

        g = torch.Generator().manual_seed(self.seed * 10_000 + i)
        a, s, px, b = *self.dims, self.batch_size
        return {
            "observation.images.corner2": torch.randint(
                0, 256, (b, 2, px, px, 3), generator=g, dtype=torch.uint8
            ),
            "observation.state": torch.randn(b, 2, s, generator=g),
            "action": torch.randn(b, 4, a, generator=g),
            "observation_is_pad": torch.zeros(b, 2, dtype=torch.bool),
            "action_is_pad": torch.zeros(b, 4, dtype=torch.bool),
            "dataset_index": torch.zeros(b, dtype=torch.long),
            "task": ["reach the goal"] * b,
        }

    def __iter__(self):
        while True:
            self.position += 1
            yield self.batch(self.position - 1)

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.position = state["position"]


def tiny_policy(seed: int = 0, extra: list[str] | None = None):
    """A real VLAPolicy built from the tiny overrides (no preset needed)."""
    import torch

    from vlaforge.config import apply_overrides
    from vlaforge.models.config import PolicyConfig
    from vlaforge.models.policy import VLAPolicy

    cfg = apply_overrides(PolicyConfig(), [s.split(".", 1)[1] for s in TINY_MODEL + (extra or [])])
    torch.manual_seed(seed)
    return VLAPolicy(cfg, metadata={"tasks": ["reach the goal"]})
