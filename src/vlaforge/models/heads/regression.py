"""Chunk regression (OpenVLA-OFT / ACT): the whole action chunk in one forward pass.

The trunk appends one readout per chunk position (`num_readouts = horizon`), like OFT's action
placeholders and ACT's decoder queries; a shared MLP-ResNet (plus a learned per-position embedding)
maps each readout to the A action entries of its position. The loss is L1 (OFT, ACT) or MSE over
the real entries of `action_mask`.

Deviations: OFT reads the LLM's hidden states at the placeholder positions through a 2-layer MLP,
ACT through a transformer decoder; here readouts of our block-wise trunk stand in for both. ACT's
KL term (CVAE) is not used. Sampling is deterministic: `num_samples` copies of the same chunk, so an
L1 model facing a bimodal target returns one point (a median), never both modes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch

from vlaforge.models.heads.base import ActionHead, TrunkOutput
from vlaforge.models.heads.common import PositionwiseMLP, masked_mean, mlp_kwargs, repeat_samples

_LOSSES = {
    "l1": lambda pred, target: (pred - target).abs(),
    "mse": lambda pred, target: (pred - target) ** 2,
}

if TYPE_CHECKING:
    from vlaforge.models.heads import HeadConfig


class RegressionHead(ActionHead):
    """Per-position readouts -> the normalized chunk [B, H, A], trained with L1 or MSE."""

    def __init__(
        self,
        embed_dim: int,
        action_dim: int,
        horizon: int,
        *,
        loss: Literal["l1", "mse"] = "l1",
        hidden_dim: int = 256,
        num_blocks: int = 2,
        dropout: float = 0.0,
        embodiments: int = 0,
    ) -> None:
        super().__init__(embed_dim, action_dim, horizon, num_readouts=horizon)
        if loss not in _LOSSES:
            raise ValueError(f"regression loss must be one of {sorted(_LOSSES)}, got {loss!r}")
        self.loss_name = loss
        self.mlp = PositionwiseMLP(
            embed_dim, horizon, action_dim, hidden_dim, num_blocks, dropout, embodiments
        )

    @classmethod
    def from_config(
        cls, cfg: HeadConfig, embed_dim: int, action_dim: int, horizon: int, embodiments: int = 0
    ) -> RegressionHead:
        return cls(embed_dim, action_dim, horizon, loss=cfg.loss, embodiments=embodiments, **mlp_kwargs(cfg))

    def predict(self, trunk: TrunkOutput) -> torch.Tensor:
        """The predicted chunk [B, H, A]."""
        return self.mlp(trunk.readouts, trunk.embodiment)  # [B, H, A]

    def loss(self, trunk, actions, action_mask):
        pred = self.predict(trunk)  # [B, H, A]
        target = actions.masked_fill(~action_mask, 0.0)  # [B, H, A]
        loss = masked_mean(_LOSSES[self.loss_name](pred, target), action_mask)
        l1 = masked_mean((pred.detach() - target).abs(), action_mask)
        return loss, {"loss": loss.item(), "l1": l1.item()}

    def sample(self, trunk, num_samples=1, generator=None):
        return repeat_samples(self.predict(trunk), num_samples)  # [B*S, H, A]


__all__ = ["RegressionHead"]
