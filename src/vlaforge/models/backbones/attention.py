"""Attention math shared by the VLM prefix and SmolVLA's expert (each piece once).

Conventions follow LeRobot's SmolVLA (`smolvlm_with_expert.py`), which the parity test checks:
- tensors are [B, L, heads, head_dim] (sequence before heads);
- `rope`: rotary embedding on the two halves of head_dim with base 10,000 whatever the text
  config's rope_theta (SmolVLA fixes it so; SmolVLM2's own LM uses 100,000);
- `attend`: eager float32 attention with grouped K/V heads; masked scores are set to the float32
  minimum (not -inf), so a fully masked row (a padded token's own query) is finite, as in SmolVLA;
  the scores and softmax stay float32 under bf16 autocast too (`train.bf16` on CUDA), where the
  float32 minimum would round to -inf in bf16 and a fully masked row would turn into NaN;
- `block_mask`: big_vision's rule - a token sees the real tokens whose cumulative block id is <= its own.
"""

from __future__ import annotations

import torch


def rope(x: torch.Tensor, positions: torch.Tensor, base: float = 10_000.0) -> torch.Tensor:
    """x [B, L, H, d] rotated by integer positions [B, L] (first half / second half pairing)."""
    half = x.shape[-1] // 2
    dtype, x = x.dtype, x.float()
    exponents = (2.0 / x.shape[-1]) * torch.arange(half, dtype=torch.float32, device=x.device)  # [d/2]
    angle = positions[..., None].float() / (base**exponents)[None, None, :]  # [B, L, d/2]
    sin, cos = torch.sin(angle)[..., None, :], torch.cos(angle)[..., None, :]  # [B, L, 1, d/2]
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(dtype)  # [B, L, H, d]


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """q [B, Lq, H, d], k/v [B, Lk, Hkv, d], mask bool [B, Lq, Lk] (True = may attend) -> [B, Lq, H*d]."""
    b, lq, h, d = q.shape
    groups = h // k.shape[2]
    k = k.repeat_interleave(groups, dim=2)  # [B, Lk, H, d]
    v = v.repeat_interleave(groups, dim=2)  # [B, Lk, H, d]
    with torch.autocast(q.device.type, enabled=False):  # float32 scores even under bf16 autocast
        scores = (
            torch.matmul(q.float().transpose(1, 2), k.float().permute(0, 2, 3, 1)) * d**-0.5
        )  # [B, H, Lq, Lk]
        scores = torch.where(mask[:, None], scores, torch.finfo(torch.float32).min)
        probs = scores.softmax(dim=-1).to(v.dtype)  # [B, H, Lq, Lk]
    out = torch.matmul(probs, v.transpose(1, 2))  # [B, H, Lq, d]
    return out.transpose(1, 2).reshape(b, lq, h * d)


def block_mask(pad: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
    """pad bool [B, N] (True = real), blocks [B, N] (1 = starts a new block) -> bool [B, N, N]."""
    cum = torch.cumsum(blocks.long(), dim=1)  # [B, N]
    causal = cum[:, None, :] <= cum[:, :, None]  # [B, N(query), N(key)]
    return causal & pad[:, None, :] & pad[:, :, None]
