"""Synthetic-but-real episodes and datasets for the data tests (real mp4 files via our writer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vlaforge.data.features import vector_feature, video_feature
from vlaforge.data.lerobot_v3 import LeRobotWriter

TASKS = ("Open a drawer", "Reach a goal position")


def features(size: int = 32, action_dim: int = 4, state_dim: int = 4, camera: str = "corner2") -> dict:
    """`camera` may name several cameras, comma-separated (e.g. "agentview,robot0_eye_in_hand")."""
    return {
        **{f"observation.images.{cam}": video_feature(size) for cam in camera.split(",")},
        "observation.state": vector_feature(state_dim),
        "action": vector_feature(action_dim),
        "next.reward": vector_feature(1),
        "next.success": vector_feature(1, dtype="bool"),
    }


def render(length: int, size: int, seed: int) -> np.ndarray:
    """Sim-like frames: a smooth shaded background and two flat blocks that move, uint8 [T, S, S, 3]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    background = np.stack([0.55 + 0.2 * xx, 0.5 + 0.15 * yy, 0.45 + 0.1 * (xx + yy) / 2], -1) * 255
    frames = np.repeat(background[None], length, axis=0)
    for color in rng.uniform(40, 220, size=(2, 3)):
        start, velocity = rng.uniform(0.1, 0.6, 2) * size, rng.uniform(-0.3, 0.3, 2)
        for t in range(length):
            y, x = (start + velocity * t).astype(int) % (size - size // 4)
            frames[t, y : y + size // 4, x : x + size // 4] = color
    return frames.astype(np.uint8)


def episode(
    length: int, seed: int, size: int = 32, action_dim: int = 4, state_dim: int = 4, camera: str = "corner2"
) -> dict:
    rng = np.random.default_rng(seed)
    return {
        **{
            f"observation.images.{cam}": render(length, size, seed + 7 * j)
            for j, cam in enumerate(camera.split(","))
        },
        "observation.state": rng.normal(size=(length, state_dim)).astype(np.float32),
        "action": rng.uniform(-1, 1, size=(length, action_dim)).astype(np.float32),
        "next.reward": rng.random(length).astype(np.float32),
        "next.success": np.arange(length) >= length - 2,
    }


def write_dataset(root: Path, lengths=(12, 20, 9, 15), size: int = 32, fps: int = 10, **kw) -> list[dict]:
    """Write and finalize a dataset; returns the episodes' frames."""
    writer = LeRobotWriter(root, fps=fps, robot_type="sawyer", features=features(size, **kw))
    episodes = [episode(n, seed=i, size=size, **kw) for i, n in enumerate(lengths)]
    for i, frames in enumerate(episodes):
        writer.add_episode(frames, TASKS[i % 2], {"seed": 100 + i})
    writer.finalize()
    return episodes
