"""Fixtures for the eval tests: small renders, and a policy that records what the runner gives it."""

from __future__ import annotations

import os
from dataclasses import dataclass

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from vlaforge import keys as T  # noqa: E402
from vlaforge.models.io import CheckpointRecord  # noqa: E402

SMALL = 64  # px: the smallest size the default camera still shows the scene at; keeps tests fast


@dataclass(frozen=True)
class StubConfig:
    cameras: tuple[str, ...] = ("corner2",)
    image_size: int = SMALL
    history: int = 3
    chunk: int = 4
    execute_steps: int = 2
    action_dim: int = 4
    state_dim: int = 4


class RecordingPolicy(torch.nn.Module):
    """A network stand-in the eval adapter (`CheckpointPolicy`) wraps like a `VLAPolicy`: returns zero
    chunks and records every batch the adapter builds (batch size, pads, shapes)."""

    def __init__(self, config: StubConfig | None = None) -> None:
        super().__init__()
        self.config = config or StubConfig()
        self.metadata: dict = {}
        self.record = CheckpointRecord()
        self.calls: list[dict] = []

    def reset(self) -> None:
        pass

    def sample_actions(self, observation: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        image = observation[T.image_key(self.config.cameras[0])]  # [B, T, H, W, C]
        self.calls.append(
            {
                "batch": image.shape[0],
                "image_shape": tuple(image.shape),
                "state_shape": tuple(observation[T.STATE].shape),
                "pad": observation[T.OBS_IS_PAD].tolist(),
                "task": list(observation[T.TASK]),
            }
        )
        return torch.zeros(image.shape[0], self.config.chunk, self.config.action_dim)  # [B, H, A]


@pytest.fixture
def recording_policy() -> RecordingPolicy:
    return RecordingPolicy()
