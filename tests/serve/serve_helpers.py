"""A tiny real checkpoint (random init, saved with `save_pretrained`) for the server tests."""

from __future__ import annotations

from pathlib import Path

import torch

from vlaforge.models.config import ImageEncoderConfig, PolicyConfig, TrunkConfig
from vlaforge.models.heads import HeadConfig
from vlaforge.models.policy import VLAPolicy

TASKS = ["reach the goal", "push the block"]


def tiny_stats(action_dim: int = 4, state_dim: int = 4) -> list[dict]:
    def feature(dim: int, lo: float, hi: float) -> dict:
        return {
            "mean": [0.1] * dim,
            "std": [0.5] * dim,
            "min": [lo] * dim,
            "max": [hi] * dim,
            "q01": [lo] * dim,
            "q99": [hi] * dim,
        }

    return [{"action": feature(action_dim, -1.0, 1.0), "observation.state": feature(state_dim, -0.5, 1.0)}]


def make_checkpoint(
    directory: Path,
    head: str = "regression",
    *,
    history: int = 2,
    seed: int = 0,
    keypoints: int = 0,
    film: bool = False,
) -> Path:
    """A 32 px, 1-layer policy with `head` (and `keypoints` spatial-softmax keypoints; with `film`,
    FiLM on the instruction with random, non-zero weights), saved to `directory`."""
    torch.manual_seed(seed)
    cfg = PolicyConfig(
        image_size=32,
        history=history,
        chunk=8,
        execute_steps=4,
        normalization="bounds",
        image=ImageEncoderConfig(
            stem_channels=(8, 16), patch_size=8, keypoints=keypoints, keypoint_level=1, film=film
        ),
        trunk=TrunkConfig(width=32, depth=1, heads=2),
        head=HeadConfig(kind=head, hidden_dim=32, num_blocks=1, num_bins=32),
    )
    policy = VLAPolicy(cfg, stats=tiny_stats(), metadata={"fps": 80, "tasks": TASKS, "preset": "test-tiny"})
    if film:  # a trained FiLM map, not the zero one a fresh policy starts with
        with torch.no_grad():
            policy.task_encoder.film.weight.normal_(0, 0.5)
    return policy.save_pretrained(directory)
