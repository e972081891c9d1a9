"""SmolVLA's action expert as an `ActionHead` on the `SmolVLMBackbone` prefix.

The expert is a narrower copy of the VLM's text model (Llama layers; width = text width x
`expert_width_multiplier`, MLP width = SmolVLA's `get_intermediate_size`, the same heads, K/V heads
and head_dim), one layer per VLM layer by default (`num_expert_layers` fewer: expert layer i//m at
every m-th VLM layer, other VLM layers pass the action tokens through). Per VLM layer i:
- self-attention layers (i % self_attn_every_n_layers == 0): the action tokens' own q/k/v, keys
  RoPE'd at positions (#real prefix tokens + j), attend to [prefix K/V of layer i ; their own K/V]
  with causal attention among actions (SmolVLA's suffix: one block per action token);
- cross-attention layers: queries RoPE'd at positions j = 0..H-1, keys/values = the expert's own
  k_proj/v_proj applied to layer i's prefix keys (after RoPE) and values (hence those projections
  take the VLM's K/V width); actions see only the real prefix tokens.
Action tokens: action_in_proj(x_t) concatenated with the sinusoidal time embedding (periods 4e-3 to
4, float64 angles), action_time_mlp_in -> SiLU -> action_time_mlp_out. Output: the expert's final
RMSNorm, then action_out_proj. Flow matching (pi0's convention, t = 1 noise) and the 10-step Euler
sampler are the shared ones of `heads/flow.py`; the prefix K/V are computed once per observation
(the context). Deviation from LeRobot: the loss is averaged over real action entries only (LeRobot
also averages padded action dims).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vlaforge.models.backbones.attention import attend, rope
from vlaforge.models.backbones.base import BackboneOutput
from vlaforge.models.config import BackboneConfig
from vlaforge.models.heads.common import sinusoidal_embedding
from vlaforge.models.heads.flow import _FlowMatchingHead


def expert_intermediate_size(hidden: int, multiplier: int = 4, multiple_of: int = 256) -> int:
    """SmolVLA's expert MLP width: 4 * (2/3 * hidden), rounded up to a multiple of 256."""
    size = int(multiplier * int(2 * hidden / 3))
    return multiple_of * ((size + multiple_of - 1) // multiple_of)


def expert_text_config(text_config: Any, bb: BackboneConfig, num_vlm_layers: int) -> Any:
    """The expert's Llama config: the VLM's text config, narrower (module docstring)."""
    cfg = copy.deepcopy(text_config)
    cfg.head_dim = text_config.head_dim  # stays the VLM's when the width changes
    cfg.hidden_size = int(text_config.hidden_size * bb.expert_width_multiplier)
    cfg.intermediate_size = expert_intermediate_size(cfg.hidden_size)
    cfg.num_hidden_layers = bb.num_expert_layers or num_vlm_layers
    return cfg


def embed_action_time(head: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """pi0's (and SmolVLA's) action tokens: `head.action_in_proj(x)` [B, H, W] concatenated with the
    sinusoidal time embedding of t [B] (periods 4e-3 to 4, float64 angles) -> `action_time_mlp_in`
    -> SiLU -> `action_time_mlp_out` -> [B, H, W]."""
    a = head.action_in_proj(x)  # [B, H, W]
    temb = sinusoidal_embedding(t, a.shape[-1], 4e-3, 4.0, precision=torch.float64).to(a.dtype)  # [B, W]
    h = torch.cat([a, temb[:, None, :].expand_as(a)], dim=-1)  # [B, H, 2W]
    return head.action_time_mlp_out(F.silu(head.action_time_mlp_in(h)))  # [B, H, W]


class SmolVLAExpertHead(_FlowMatchingHead):
    """`smolvla-expert`: flow matching with SmolVLA's interleaved cross/self-attention expert."""

    def __init__(
        self, text_config: Any, bb: BackboneConfig, num_vlm_layers: int, action_dim: int, horizon: int,
        **flow_kwargs: Any,
    ) -> None:  # fmt: skip
        super().__init__(text_config.hidden_size, action_dim, horizon, **flow_kwargs)
        from transformers import AutoModel

        cfg = expert_text_config(text_config, bb, num_vlm_layers)
        if num_vlm_layers % cfg.num_hidden_layers:
            raise ValueError(f"backbone.num_expert_layers must divide the {num_vlm_layers} VLM layers used")
        self.num_vlm_layers, self.every = num_vlm_layers, bb.self_attn_every_n_layers
        self.expert = AutoModel.from_config(cfg)
        self.expert.embed_tokens = None  # the expert reads action tokens, not text
        kv_in = text_config.num_key_value_heads * text_config.head_dim
        kv_out = cfg.num_key_value_heads * cfg.head_dim
        for i in range(self.num_vlm_layers):
            layer = self.layer_for(i)
            if layer is not None and not self.is_self_attn(i):  # cross layers read the VLM's K/V width
                layer.self_attn.k_proj = nn.Linear(kv_in, kv_out, bias=cfg.attention_bias)
                layer.self_attn.v_proj = nn.Linear(kv_in, kv_out, bias=cfg.attention_bias)
        w = self.width = cfg.hidden_size
        self.action_in_proj = nn.Linear(action_dim, w)
        self.action_out_proj = nn.Linear(w, action_dim)
        self.action_time_mlp_in = nn.Linear(2 * w, w)
        self.action_time_mlp_out = nn.Linear(w, w)

    def is_self_attn(self, i: int) -> bool:
        return self.every > 0 and i % self.every == 0

    def layer_for(self, i: int) -> nn.Module | None:
        """The expert layer at VLM layer i (None: the action tokens pass through unchanged)."""
        step = self.num_vlm_layers // len(self.expert.layers)
        return None if i % step else self.expert.layers[i // step]

    def context(self, trunk: BackboneOutput, num_samples: int) -> dict[str, Any]:
        """The prefix per-layer K/V and pad mask, repeated per sample (once per observation)."""
        rep = lambda x: x.repeat_interleave(num_samples, dim=0)  # noqa: E731
        if trunk.layer_kv is None or len(trunk.layer_kv) != self.num_vlm_layers:
            raise ValueError("the smolvla-expert head needs the SmolVLM backbone's per-layer keys/values")
        return {"kv": [(rep(k), rep(v)) for k, v in trunk.layer_kv], "pad": rep(trunk.token_mask)}

    def embed_actions(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Noisy chunk x [B, H, A] and times t [B] -> action tokens [B, H, W]."""
        return embed_action_time(self, x, t)

    def velocity(self, x: torch.Tensor, t: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        pad = context["pad"]  # [B, P]
        b, h = x.shape[:2]
        steps = torch.arange(h, device=x.device)  # [H]
        self_pos = pad.sum(-1, keepdim=True) + steps[None]  # [B, H] after the real prefix tokens
        cross_pos = steps[None].expand(b, -1)  # [B, H] from 0
        causal = torch.ones(h, h, dtype=torch.bool, device=x.device).tril()  # [H, H]
        self_mask = torch.cat([pad[:, None, :].expand(-1, h, -1), causal.expand(b, -1, -1)], dim=2)
        cross_mask = pad[:, None, :].expand(-1, h, -1)  # [B, H, P]
        tok = self.embed_actions(x, t)  # [B, H, W]
        for i, (pk, pv) in enumerate(context["kv"]):
            layer = self.layer_for(i)
            if layer is None:
                continue
            attn = layer.self_attn
            hs = layer.input_layernorm(tok)
            q = attn.q_proj(hs).unflatten(-1, (-1, attn.head_dim))  # [B, H, heads, d]
            if self.is_self_attn(i):
                k = rope(attn.k_proj(hs).unflatten(-1, (-1, attn.head_dim)), self_pos)  # [B, H, Hkv, d]
                v = attn.v_proj(hs).unflatten(-1, (-1, attn.head_dim))
                k, v = torch.cat([pk, k], dim=1), torch.cat([pv, v], dim=1)  # [B, P+H, Hkv, d]
                out = attend(rope(q, self_pos), k, v, self_mask)
            else:
                k = attn.k_proj(pk.flatten(2)).unflatten(-1, (-1, attn.head_dim))  # [B, P, Hkv, d]
                v = attn.v_proj(pv.flatten(2)).unflatten(-1, (-1, attn.head_dim))
                out = attend(rope(q, cross_pos), k, v, cross_mask)
            tok = tok + attn.o_proj(out)  # [B, H, W]
            tok = tok + layer.mlp(layer.post_attention_layernorm(tok))
        return self.action_out_proj(self.expert.norm(tok))  # [B, H, A]
