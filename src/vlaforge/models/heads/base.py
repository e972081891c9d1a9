"""The one ActionHead ABC that every action head subclasses.

A head turns what the trunk produced into a chunk of normalized actions. The trunk never branches on
the head type: it asks the head how many readout tokens it wants (`num_readouts`) and hands it a
`TrunkOutput`.

Conventions:
- actions given to `loss` and returned by `sample` are *normalized* (the policy owns normalization);
  shape [B, H, A] with H = `horizon`, A = `action_dim` (the padded dimension inside a mixture).
- `action_mask` is bool [B, H, A], True where the entry is real (not chunk padding past the episode
  end, not a padded dimension of a smaller robot). Every head averages its loss over True entries only.
- `sample` returns [B * num_samples, H, A] ordered sample-major per observation
  (rows b*num_samples ... b*num_samples + num_samples - 1 belong to observation b).

Deviation from DESIGN.md: `loss`/`sample` take a `TrunkOutput` rather than the bare readout tensor,
so heads that attend to the trunk's tokens (the pi0-style action expert) fit the same ABC.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class TrunkOutput:
    """What the trunk hands to a head.

    readouts: [B, R, D] the head's readout tokens (R = head.num_readouts).
    tokens:   [B, N, D] the task + observation tokens after the last layer (for heads that attend).
    token_mask: [B, N] bool, True where a token is real (None: all real).
    embodiment: [B] int64, the dataset index, for a head with per-embodiment layers (None: none given).
    """

    readouts: torch.Tensor
    tokens: torch.Tensor
    token_mask: torch.Tensor | None = None
    embodiment: torch.Tensor | None = None


class ActionHead(nn.Module, ABC):
    """Base of every action head: maps a `TrunkOutput` to normalized action chunks."""

    def __init__(self, embed_dim: int, action_dim: int, horizon: int, num_readouts: int = 1) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.action_dim = action_dim
        self.horizon = horizon
        self._num_readouts = num_readouts

    @property
    def num_readouts(self) -> int:
        """How many readout tokens the trunk should append for this head (default 1)."""
        return self._num_readouts

    @abstractmethod
    def loss(
        self, trunk: TrunkOutput, actions: torch.Tensor, action_mask: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss (a scalar tensor) and float metrics for logging."""

    @abstractmethod
    def sample(
        self, trunk: TrunkOutput, num_samples: int = 1, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Normalized actions [B * num_samples, H, A]."""
