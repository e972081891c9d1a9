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
    action_offset: float = 0.0,
    fps: int = 10,
    robot_type: str = "test",
) -> None:
    """A LeRobot v3 dataset of random-walk episodes; each episode records its env seed. `camera`
    may name several cameras, comma-separated."""
    from vlaforge.data.features import vector_feature, video_feature
    from vlaforge.data.lerobot_v3 import LeRobotWriter

    rng = np.random.default_rng(seed)
    cameras = camera.split(",")
    features = {
        **{f"observation.images.{cam}": video_feature(size) for cam in cameras},
        "observation.state": vector_feature(state_dim),
        "action": vector_feature(action_dim),
    }
    writer = LeRobotWriter(root, fps=fps, robot_type=robot_type, features=features)
    for ep in range(episodes):
        action = (np.cumsum(rng.normal(0, 0.1, (length, action_dim)), 0) + action_offset).astype(np.float32)
        state = np.cumsum(rng.normal(0, 0.1, (length, state_dim)), 0).astype(np.float32)
        frames = rng.integers(0, 255, (length, size, size, 3), dtype=np.uint8)
        writer.add_episode(
            {
                **{f"observation.images.{cam}": frames for cam in cameras},
                "observation.state": state,
                "action": action,
            },
            task=task,
            metadata={"seed": seed * 100 + ep},
        )
    writer.finalize()
