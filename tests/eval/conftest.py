"""Fixtures for the eval tests: small renders, and policies that record what the runner gives them."""

from __future__ import annotations

import os
from dataclasses import dataclass

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("EGL_PLATFORM", "surfaceless")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from vlaforge import types as T  # noqa: E402
from vlaforge.eval.baselines import ExpertPolicy, ScriptedConfig  # noqa: E402

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


class RecordingPolicy:
    """Returns zero chunks and records every batch the runner builds (batch size, pads, shapes)."""

    def __init__(self, config: StubConfig | None = None) -> None:
        self.config = config or StubConfig()
        self.metadata: dict = {}
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


class CountingExpert(ExpertPolicy):
    """The scripted expert, recording the batch size of every call."""

    def __init__(self) -> None:
        super().__init__(ScriptedConfig(image_size=SMALL))
        self.batch_sizes: list[int] = []

    def sample_actions(self, observation: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        self.batch_sizes.append(len(observation[T.TASK]))
        return super().sample_actions(observation, generator)


@pytest.fixture
def recording_policy() -> RecordingPolicy:
    return RecordingPolicy()


@pytest.fixture
def counting_expert() -> CountingExpert:
    return CountingExpert()
