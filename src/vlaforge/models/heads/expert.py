"""pi0-style action expert: a small transformer whose action tokens attend to a cached prefix.

The prefix is the trunk's task + observation tokens followed by the head's readouts. Each expert
layer projects the (layer-normed) prefix to its own keys/values **once per observation**
(`ActionExpert.encode_prefix` -> `PrefixKV`); at every Euler step the H action tokens compute their
own queries/keys/values and attend to [prefix keys ; action keys] (bidirectionally among actions,
as pi0's action block), so the per-step cost does not grow with the prefix projection.

Action tokens: Linear(x_t) concatenated with a sinusoidal embedding of t, mixed by a 2-layer SiLU MLP
(pi0's action-time MLP), plus a learned position embedding; the output is LayerNorm + Linear to A.

Deviation from pi0: pi0's expert shares attention with every layer of the PaliGemma prefix (each
expert layer sees that layer's prefix keys/values); our trunk hands over only its final tokens, so
each expert layer projects those final tokens with its own K/V weights (as GR00T's DiT
cross-attends to final VLM features). pi0 uses RoPE and RMSNorm; we use learned positions and
LayerNorm. The state token of pi0 is part of our trunk's tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vlaforge.models.heads.base import TrunkOutput
from vlaforge.models.heads.common import sinusoidal_embedding


@dataclass
class PrefixKV:
    """Per-layer prefix keys/values and the attention mask of the action tokens.

    keys_values: one (k, v) per expert layer, each [B, heads, P, head_dim].
    attn_mask: [B, 1, 1, P + H] bool, True where an action token may attend (None: everything).
    """

    keys_values: list[tuple[torch.Tensor, torch.Tensor]]
    attn_mask: torch.Tensor | None

    def repeat_interleave(self, n: int) -> PrefixKV:
        """The same prefix for `n` samples per observation (sample-major, as the ABC orders them)."""
        if n == 1:
            return self
        rep = lambda x: x.repeat_interleave(n, dim=0)
        mask = None if self.attn_mask is None else rep(self.attn_mask)
        return PrefixKV([(rep(k), rep(v)) for k, v in self.keys_values], mask)


class ExpertLayer(nn.Module):
    """Pre-norm block: action tokens attend to [prefix ; actions], then an MLP."""

    def __init__(self, embed_dim: int, width: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"expert width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.prefix_kv = nn.Linear(embed_dim, 2 * width)
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, mlp_ratio * width), nn.GELU(), nn.Linear(mlp_ratio * width, width)
        )

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # [B, heads, L, head_dim]

    def encode_prefix(self, prefix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normed prefix [B, P, D] -> this layer's (k, v), each [B, heads, P, head_dim]."""
        k, v = self.prefix_kv(prefix).chunk(2, dim=-1)  # [B, P, W] each
        return self._heads(k), self._heads(v)

    def forward(
        self, x: torch.Tensor, prefix_kv: tuple[torch.Tensor, torch.Tensor], attn_mask: torch.Tensor | None
    ) -> torch.Tensor:
        q, k, v = (self._heads(z) for z in self.qkv(self.norm1(x)).chunk(3, dim=-1))  # [B, h, H, hd]
        k = torch.cat([prefix_kv[0], k], dim=2)  # [B, h, P+H, hd]
        v = torch.cat([prefix_kv[1], v], dim=2)  # [B, h, P+H, hd]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # [B, h, H, hd]
        x = x + self.proj(a.transpose(1, 2).flatten(2))  # [B, H, W]
        return x + self.mlp(self.norm2(x))


class ActionExpert(nn.Module):
    """The expert transformer: `encode_prefix(trunk)` once, then `forward(x_t, t, prefix)` per step."""

    def __init__(
        self,
        embed_dim: int,
        action_dim: int,
        horizon: int,
        width: int,
        depth: int,
        heads: int,
        mlp_ratio: int,
    ) -> None:
        super().__init__()
        self.horizon = horizon
        self.width = width
        self.prefix_norm = nn.LayerNorm(embed_dim)
        self.action_in = nn.Linear(action_dim, width)
        self.action_time = nn.Sequential(nn.Linear(2 * width, width), nn.SiLU(), nn.Linear(width, width))
        self.position = nn.Parameter(torch.randn(horizon, width) * 0.02)  # [H, W]
        self.layers = nn.ModuleList(ExpertLayer(embed_dim, width, heads, mlp_ratio) for _ in range(depth))
        self.norm_out = nn.LayerNorm(width)
        self.action_out = nn.Linear(width, action_dim)

    def encode_prefix(self, trunk: TrunkOutput) -> PrefixKV:
        """Keys/values of [trunk tokens ; readouts] for every layer, plus the action tokens' mask."""
        prefix = self.prefix_norm(torch.cat([trunk.tokens, trunk.readouts], dim=1))  # [B, P, D]
        kv = [layer.encode_prefix(prefix) for layer in self.layers]
        if trunk.token_mask is None:
            return PrefixKV(kv, None)
        b = prefix.shape[0]
        real = trunk.token_mask.new_ones(b, trunk.readouts.shape[1] + self.horizon)  # [B, R+H]
        mask = torch.cat([trunk.token_mask.bool(), real.bool()], dim=1)  # [B, P+H]
        return PrefixKV(kv, mask[:, None, None, :])  # [B, 1, 1, P+H]

    def forward(self, x: torch.Tensor, t: torch.Tensor, prefix: PrefixKV) -> torch.Tensor:
        """Velocity [B, H, A] of noisy chunks x [B, H, A] at times t [B]."""
        temb = sinusoidal_embedding(t, self.width).to(x.dtype)  # [B, W]
        temb = temb[:, None, :].expand(-1, x.shape[1], -1)  # [B, H, W]
        tok = self.action_time(torch.cat([self.action_in(x), temb], dim=-1)) + self.position  # [B, H, W]
        for layer, kv in zip(self.layers, prefix.keys_values, strict=True):
            tok = layer(tok, kv, prefix.attn_mask)
        return self.action_out(self.norm_out(tok))  # [B, H, A]


__all__ = ["ActionExpert", "ExpertLayer", "PrefixKV"]
