"""Discrete action tokens (RT-2 / OpenVLA): each action entry is one of `num_bins` classes.

Conventions: the policy normalizes actions to [-1, 1] with per-dimension q01/q99 bounds before they
reach this head (values outside are clipped here). [-1, 1] is cut into `num_bins` (256) uniform
bins; `encode` maps a value to its bin index, `decode` maps an index to its bin centre, so
decode(encode(x)) is within half a bin (1 / num_bins) of clip(x, -1, 1). The loss is cross-entropy
over the real entries of `action_mask`; decoding is the argmax bin's centre.

Deviations: OpenVLA maps bins onto the last 256 tokens of the LM vocabulary and decodes them one by
one, autoregressively (that is the `ar-bins` head, heads/decoder.py); here one readout per chunk
position predicts the logits of all A entries of its position, and all chunk positions are decoded
in parallel in one pass (as OFT argues for speed). OpenVLA's `np.digitize` over 256 edges yields 255 usable bins; we use all 256 uniformly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from vlaforge.models.heads.base import ActionHead, TrunkOutput
from vlaforge.models.heads.common import (
    PositionwiseMLP,
    bin_centre,
    bin_index,
    masked_mean,
    mlp_kwargs,
    repeat_samples,
)

if TYPE_CHECKING:
    from vlaforge.models.heads import HeadConfig


class TokenHead(ActionHead):
    """Per-position readouts -> logits [B, H, A, num_bins]; argmax bin centres as actions."""

    def __init__(
        self,
        embed_dim: int,
        action_dim: int,
        horizon: int,
        *,
        num_bins: int = 256,
        hidden_dim: int = 256,
        num_blocks: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(embed_dim, action_dim, horizon, num_readouts=horizon)
        self.num_bins = num_bins
        self.mlp = PositionwiseMLP(embed_dim, horizon, action_dim * num_bins, hidden_dim, num_blocks, dropout)

    @classmethod
    def from_config(cls, cfg: HeadConfig, embed_dim: int, action_dim: int, horizon: int) -> TokenHead:
        return cls(embed_dim, action_dim, horizon, num_bins=cfg.num_bins, **mlp_kwargs(cfg))

    def encode(self, actions: torch.Tensor) -> torch.Tensor:
        """Normalized actions (any shape) -> bin indices (int64), values clipped to [-1, 1]."""
        return bin_index(actions, self.num_bins)

    def decode(self, bins: torch.Tensor) -> torch.Tensor:
        """Bin indices (any shape) -> bin centres in (-1, 1), float32."""
        return bin_centre(bins, self.num_bins)

    def logits(self, trunk: TrunkOutput) -> torch.Tensor:
        """[B, H, A, num_bins] logits for every entry of the chunk."""
        out = self.mlp(trunk.readouts)  # [B, H, A*K]
        return out.unflatten(-1, (self.action_dim, self.num_bins))  # [B, H, A, K]

    def loss(self, trunk, actions, action_mask):
        logits = self.logits(trunk)  # [B, H, A, K]
        target = self.encode(actions.masked_fill(~action_mask, 0.0))  # [B, H, A]
        ce = F.cross_entropy(logits.flatten(0, 2), target.flatten(), reduction="none")  # [B*H*A]
        loss = masked_mean(ce.view_as(target), action_mask)
        correct = (logits.detach().argmax(-1) == target).float()  # [B, H, A]
        return loss, {"loss": loss.item(), "token_accuracy": masked_mean(correct, action_mask).item()}

    def sample(self, trunk, num_samples=1, generator=None):
        bins = self.logits(trunk).argmax(-1)  # [B, H, A]
        actions = self.decode(bins).to(trunk.readouts.dtype)  # [B, H, A]
        return repeat_samples(actions, num_samples)  # [B*S, H, A]


__all__ = ["TokenHead"]
