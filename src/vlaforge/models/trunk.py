"""The trunk: a pre-norm transformer over task, observation and readout tokens with Octo's
block-wise attention mask.

Token layout (N = L + T*K + R):  [task (L)] [obs step 0 (K)] ... [obs step T-1 (K)] [readouts (R)]

Who attends to whom (query row -> allowed keys):
- task tokens:        task tokens;
- obs tokens at t:    task tokens + obs tokens at steps <= t (bidirectional within a step);
- readout tokens:     task tokens + all obs tokens + the readout group (bidirectional);
- nobody but readouts attends to readouts, so adding readouts never changes the other tokens.
Readouts sit only at the last step (Octo puts a group at every step but its heads read the last
one). Padded history steps (`observation_is_pad`) are removed as keys; their own rows still see the
task tokens, so no row is fully masked.

Attention is `F.scaled_dot_product_attention` with a boolean mask (True = may attend).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vlaforge.models.checkpointing import checkpointed
from vlaforge.models.config import TrunkConfig
from vlaforge.models.heads.base import TrunkOutput


def blockwise_mask(num_task: int, history: int, per_step: int, num_readouts: int) -> torch.Tensor:
    """Static bool mask [N, N] (True = query row may attend to key column), see the module doc."""
    group = torch.cat(
        [
            torch.zeros(num_task, dtype=torch.long),
            torch.arange(1, history + 1).repeat_interleave(per_step),
            torch.full((num_readouts,), history + 1),
        ]
    )  # [N] 0 = task, 1..T = obs step, T+1 = readouts
    # Groups are ordered, so "key group <= query group" is the whole rule: readouts (the last
    # group) are seen only by readouts, obs see task + earlier/same steps, task sees task.
    return group[None, :] <= group[:, None]


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)); x + mlp(ln(x))."""

    def __init__(self, cfg: TrunkConfig) -> None:
        super().__init__()
        d = cfg.width
        self.heads, self.dropout = cfg.heads, cfg.dropout
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        hidden = int(cfg.mlp_ratio * d)
        self.mlp = nn.Sequential(
            nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d), nn.Dropout(cfg.dropout)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.step(x, mask)[0]

    def step(
        self, x: torch.Tensor, mask: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The block on new rows x [B, N, D] whose keys/values follow `past` (K, V [B, h, M, d/h]);
        `mask` [.., N, M+N] covers past + new keys. Returns x and this layer's K/V cache [.., M+N, ..]
        (the per-layer KV cache of autoregressive decoding: one call per decoded token)."""
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)  # [B, h, M+N, d/h]
        p = self.dropout if self.training else 0.0
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # [B, h, N, d/h]
        x = x + self.proj(a.transpose(1, 2).reshape(b, n, d))  # [B, N, D]
        return x + self.mlp(self.ln2(x)), (k, v)


class Trunk(nn.Module):
    """Task tokens [B, L, D] + obs tokens [B, T, K, D] -> `TrunkOutput` with R readouts."""

    def __init__(self, cfg: TrunkConfig, num_readouts: int) -> None:
        super().__init__()
        self.num_readouts = num_readouts
        self.readouts = nn.Parameter(torch.randn(num_readouts, cfg.width) * 0.02)  # [R, D], pos included
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.ln_out = nn.LayerNorm(cfg.width)
        self._masks: dict[tuple, torch.Tensor] = {}
        self.grad_checkpointing = False  # `vlaforge.models.checkpointing` (train.grad_checkpointing)

    def _mask(self, shape: tuple[int, int, int, int], device: torch.device) -> torch.Tensor:
        key = (*shape, str(device))
        if key not in self._masks:
            with torch.inference_mode(False):  # a cached mask must also serve later training steps
                self._masks[key] = blockwise_mask(*shape).to(device)
        return self._masks[key]

    def forward(
        self,
        task: torch.Tensor,
        obs: torch.Tensor,
        obs_is_pad: torch.Tensor | None = None,
        step_mask: torch.Tensor | None = None,
    ) -> TrunkOutput:
        """`obs_is_pad` [B, T] (True = padded history step) and `step_mask` [B, K] (True = a real
        token within each step, e.g. False for a missing camera slot) remove tokens as keys."""
        b, t, k, d = obs.shape
        n_ctx = task.shape[1] + t * k
        readouts = self.readouts.expand(b, -1, -1)  # [B, R, D]
        x = torch.cat([task, obs.reshape(b, t * k, d), readouts], dim=1)  # [B, N, D]
        mask = self._mask((task.shape[1], t, k, self.num_readouts), x.device)  # [N, N]
        token_mask = None
        if (
            obs_is_pad is not None or step_mask is not None
        ):  # no data-dependent branch: exported graphs keep it
            obs_real = torch.ones(b, t, k, dtype=torch.bool, device=x.device)  # [B, T, K]
            if obs_is_pad is not None:
                obs_real = obs_real & ~obs_is_pad.bool()[:, :, None]
            if step_mask is not None:
                obs_real = obs_real & step_mask.bool()[:, None, :]
            real = torch.ones(b, x.shape[1], dtype=torch.bool, device=x.device)  # [B, N]
            real[:, task.shape[1] : n_ctx] = obs_real.reshape(b, t * k)
            mask = mask[None, None] & real[:, None, None, :]  # [B, 1, N, N]
            token_mask = real[:, :n_ctx]
        for block in self.blocks:
            x = checkpointed(self, block, x, mask)  # [B, N, D]
        x = self.ln_out(x)
        return TrunkOutput(readouts=x[:, n_ctx:], tokens=x[:, :n_ctx], token_mask=token_mask)
