"""pi0's action expert as an `ActionHead` on the `PaliGemmaBackbone` prefix.

The expert is a narrower Gemma (its own weights; pi0's "gemma_300m": width 1024, MLP 4096, 18
layers, 8 heads, 1 K/V head, head_dim 256) with one layer per PaliGemma layer and the VLM's head
count, K/V heads and head_dim, so that at layer i its queries attend to [layer i's prefix keys/values
; its own keys/values] - pi0's joint attention, with the prefix K/V computed once per observation
(as openpi's KV-cached sampling; training gives the same values since the prefix never attends to
the suffix).

Suffix tokens (pi0, not pi0.5): [state token] [action token 1] ... [action token H], where the state
token is `state_proj(state)` (the normalized last state) and the action tokens are
`embed_action_time` (action_in_proj(x_t) concatenated with the sinusoidal time embedding, periods
4e-3 to 4, through action_time_mlp_in -> SiLU -> action_time_mlp_out; shared with SmolVLA). The mask
is pi0's block-causal one (ar_mask [1, 1, 0, ...] over the suffix):
- prefix tokens attend bidirectionally to the real prefix (`PaliGemmaBackbone`);
- the state token attends to the prefix and itself;
- action tokens attend to the prefix, the state and every action token.
Positions continue after the real prefix tokens (#real + j). Output: the expert's final RMSNorm on
the action tokens, then action_out_proj. Flow matching (pi0's convention, t = 1 noise, Beta(1.5, 1)
times) and the 10-step Euler sampler are the shared ones of `heads/flow.py`. With state_dim = 0 there
is no state token. Deviation from openpi: the loss is averaged over real action entries only.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from vlaforge.errors import VlaforgeError
from vlaforge.models.backbones.attention import attend, rope
from vlaforge.models.backbones.base import BackboneOutput
from vlaforge.models.backbones.smolvla_expert import embed_action_time
from vlaforge.models.checkpointing import checkpointed
from vlaforge.models.config import BackboneConfig
from vlaforge.models.heads.flow import _FlowMatchingHead


def expert_config(text_config: Any, bb: BackboneConfig) -> Any:
    """The expert's Gemma config: the VLM's text config at the expert's width and MLP width."""
    cfg = copy.deepcopy(text_config)
    cfg.head_dim = text_config.head_dim  # shared attention: the VLM's heads and head_dim
    cfg.hidden_size = int(text_config.hidden_size * bb.expert_width_multiplier)
    cfg.intermediate_size = bb.expert_mlp or 4 * cfg.hidden_size
    if bb.num_expert_layers not in (0, text_config.num_hidden_layers):
        raise VlaforgeError(
            "the pi0 expert has one layer per PaliGemma layer: backbone.num_expert_layers must be 0"
        )
    return cfg


def suffix_mask(pad: torch.Tensor, num_state: int, horizon: int) -> torch.Tensor:
    """Prefix pad [B, P] (True = real) -> bool [B, S, P + S] (True = may attend), S = num_state + H:
    every suffix token sees the real prefix; the state sees itself; actions see state and actions."""
    b, s = pad.shape[0], num_state + horizon
    starts = torch.zeros(s, dtype=torch.long, device=pad.device)  # pi0's ar_mask over the suffix
    starts[0] = 1
    starts[num_state] = 1
    cum = torch.cumsum(starts, 0)  # [S]
    inner = cum[None, :] <= cum[:, None]  # [S(query), S(key)]
    return torch.cat([pad[:, None, :].expand(-1, s, -1), inner.expand(b, -1, -1)], dim=2)


def expert_layer(
    layer: nn.Module,
    x: torch.Tensor,
    pk: torch.Tensor,
    pv: torch.Tensor,
    positions: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """One expert Gemma layer: suffix x [B, S, W] attends to [prefix K/V ; its own K/V] -> [B, S, W]."""
    attn = layer.self_attn
    h = layer.input_layernorm(x)
    q = rope(attn.q_proj(h).unflatten(-1, (-1, attn.head_dim)), positions)  # [B, S, H, d]
    k = rope(attn.k_proj(h).unflatten(-1, (-1, attn.head_dim)), positions)  # [B, S, Hkv, d]
    v = attn.v_proj(h).unflatten(-1, (-1, attn.head_dim))  # [B, S, Hkv, d]
    out = attend(q, torch.cat([pk, k], dim=1), torch.cat([pv, v], dim=1), mask)  # [B, S, H*d]
    x = x + attn.o_proj(out)  # [B, S, W]
    return x + layer.mlp(layer.post_attention_layernorm(x))


class Pi0ExpertHead(_FlowMatchingHead):
    """`pi0-expert`: flow matching with pi0's Gemma action expert over the PaliGemma prefix K/V."""

    def __init__(
        self, text_config: Any, bb: BackboneConfig, state_dim: int, action_dim: int, horizon: int,
        **flow_kwargs: Any,
    ) -> None:  # fmt: skip
        super().__init__(text_config.hidden_size, action_dim, horizon, **flow_kwargs)
        from transformers import AutoModel

        cfg = expert_config(text_config, bb)
        self.num_vlm_layers, self.grad_checkpointing = text_config.num_hidden_layers, False
        self.expert = AutoModel.from_config(cfg)
        self.expert.embed_tokens = None  # the expert reads state and action tokens, not text
        w = self.width = cfg.hidden_size
        self.state_proj = nn.Linear(state_dim, w) if state_dim > 0 else None
        self.action_in_proj = nn.Linear(action_dim, w)
        self.action_out_proj = nn.Linear(w, action_dim)
        self.action_time_mlp_in = nn.Linear(2 * w, w)
        self.action_time_mlp_out = nn.Linear(w, w)

    def context(self, trunk: BackboneOutput, num_samples: int) -> dict[str, Any]:
        """Prefix per-layer K/V, pad mask and the state token, repeated per sample (once per observation)."""
        if trunk.layer_kv is None or len(trunk.layer_kv) != self.num_vlm_layers:
            raise ValueError("the pi0-expert head needs the PaliGemma backbone's per-layer keys/values")
        rep = lambda x: x.repeat_interleave(num_samples, dim=0)  # noqa: E731
        state = None
        if self.state_proj is not None:
            if trunk.state is None:
                raise ValueError("the pi0-expert head was built with a state token but got no state")
            state = rep(self.state_proj(trunk.state)[:, None, :])  # [B*S, 1, W]
        return {
            "kv": [(rep(k), rep(v)) for k, v in trunk.layer_kv],
            "pad": rep(trunk.token_mask),
            "state": state,
        }

    def velocity(self, x: torch.Tensor, t: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        pad, state = context["pad"], context["state"]  # [B, P], [B, 1, W] or None
        tok = embed_action_time(self, x, t)  # [B, H, W]
        if state is not None:
            tok = torch.cat([state.to(tok.dtype), tok], dim=1)  # [B, 1+H, W]
        n_state = tok.shape[1] - x.shape[1]
        mask = suffix_mask(pad, n_state, x.shape[1])  # [B, S, P+S]
        steps = torch.arange(tok.shape[1], device=x.device)  # [S]
        positions = pad.sum(-1, keepdim=True) + steps[None]  # [B, S] after the real prefix tokens
        for layer, (pk, pv) in zip(self.expert.layers, context["kv"], strict=True):
            tok = checkpointed(self, expert_layer, layer, tok, pk, pv, positions, mask)  # [B, S, W]
        return self.action_out_proj(self.expert.norm(tok[:, n_state:]))  # [B, H, A]
