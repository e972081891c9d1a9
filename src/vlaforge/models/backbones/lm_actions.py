"""`lm-bins`: RT-2 / OpenVLA action tokens - the last 256 ids of the LM's vocabulary, decoded by the LM.

Each entry of a normalized chunk (bounds normalization, [-1, 1]) is one of 256 uniform bins
(`tokenizers/bins.py`, the binning shared with the `tokens` and `ar-bins` heads), time-major, so a
chunk of H steps is H x A tokens (OpenVLA: H = 1, A = 7). Bin b is the LM id `V - 1 - b`, V = the
LM's vocabulary size (config.vocab_size; Llama-2: 32,000, as OpenVLA's `vocab_size - digitize(a)`:
the lowest bin is the last id; the tiny LM has 256 ids past its character tokens for them).
The end-of-actions token is the tokenizer's EOS (OpenVLA's `</s>` after the action tokens).

Sequence: `[prefix embeddings (BOS, image patches, prompt)] [t1 ... tn] EOS`, all through the LM
causally (a decoder-only LM, as OpenVLA; the prefix is causal too). The LM predicts t1 from the last
prompt token, and so on; training is teacher forced (one pass over prefix + t1..tn), inference is
greedy by default with the LM's own KV cache (`TokenDecoder.generate`, the decode loop shared with
`ar-bins` / `ar-fast`). Positions are the cumulative count of real tokens minus one (the prompt is
left-padded inside the prefix, see `prismatic.py`).

Deviation: the softmax (loss and decoding) is over the 256 action ids + EOS only (constrained
decoding); OpenVLA's cross-entropy is over the whole vocabulary and its argmax may pick a
non-action id, which its detokenizer then maps to an arbitrary bin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from vlaforge.errors import VlaforgeError
from vlaforge.models.heads.base import TrunkOutput
from vlaforge.models.heads.decoder import TokenDecoder
from vlaforge.models.tokenizers.bins import BinTokenizer

if TYPE_CHECKING:
    from vlaforge.models.backbones.prismatic import PrismaticBackbone


def action_token_ids(vocab_end: int, num_bins: int, eos_id: int) -> torch.Tensor:
    """LM ids of the head ids [0 .. num_bins] (bins, then EOS): bin b -> vocab_end - 1 - b."""
    if eos_id is None or vocab_end - num_bins <= eos_id < vocab_end:
        raise VlaforgeError("the LM tokenizer needs an EOS token outside its last num_bins ids")
    return torch.tensor([vocab_end - 1 - b for b in range(num_bins)] + [eos_id], dtype=torch.long)


@dataclass
class LMCache:
    """The LM's past keys/values of the decode so far and the prefix's real-token count [B]."""

    past: Any
    lengths: torch.Tensor


class LMBinsHead(TokenDecoder):
    """Action tokens on the prismatic backbone's LM (module docstring). Owns no weights: the LM is
    the backbone's (held by reference, not registered, so checkpoints name it once)."""

    def __init__(self, backbone: PrismaticBackbone, action_dim: int, horizon: int, num_bins: int = 256,
                 temperature: float = 0.0) -> None:  # fmt: skip
        super().__init__(
            backbone.width, action_dim, horizon, scheme="bins", vocab_size=num_bins,
            max_tokens=horizon * action_dim, temperature=temperature,
            tokenizer=BinTokenizer(horizon, action_dim, num_bins),
        )  # fmt: skip
        object.__setattr__(self, "backbone", backbone)  # a reference, not a submodule
        ids = action_token_ids(backbone.vocab_end, num_bins, backbone.tokenizer.eos_token_id)
        self.register_buffer("lm_ids", ids, persistent=False)  # [num_bins + 1]

    @property
    def lm(self) -> nn.Module:
        return self.backbone.lm

    def _prefix(self, trunk: TrunkOutput) -> tuple[torch.Tensor, torch.Tensor]:
        real = trunk.token_mask
        if real is None:
            real = torch.ones(trunk.tokens.shape[:2], dtype=torch.bool, device=trunk.tokens.device)
        return trunk.tokens, real

    def _action_embeds(self, head_ids: torch.Tensor) -> torch.Tensor:
        """Head ids [B, L] (bins / EOS) -> the LM's input embeddings of their LM ids [B, L, D]."""
        return self.lm.get_input_embeddings()(self.lm_ids.to(head_ids.device)[head_ids])

    def _restrict(self, hidden: torch.Tensor) -> torch.Tensor:
        """LM hidden states [B, L, D] -> logits over the head ids [B, L, num_bins + 1]."""
        return self.lm.get_output_embeddings()(hidden)[..., self.lm_ids.to(hidden.device)]

    def _run(self, embeds, mask, positions, past=None):
        out = self.lm.model(
            inputs_embeds=embeds, attention_mask=mask.long(), position_ids=positions,
            cache=past, use_cache=past is not None,
        )  # fmt: skip
        return out.last_hidden_state, out.cache

    def full_logits(self, prefix: torch.Tensor, real: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        p = prefix.shape[1]
        x = torch.cat([prefix, self._action_embeds(inputs[:, 1:])], dim=1)  # [B, P+L-1, D] (BOS dropped)
        mask = torch.cat([real, torch.ones_like(inputs[:, 1:], dtype=torch.bool)], dim=1)  # [B, P+L-1]
        positions = (mask.long().cumsum(1) - 1).clamp(min=0)  # [B, P+L-1]
        hidden, _ = self._run(x, mask, positions)
        return self._restrict(hidden[:, p - 1 :])  # [B, L, V+1]: predictions of t1 .. tL

    def prefill(self, prefix: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, LMCache]:
        from transformers import DynamicCache

        positions = (real.long().cumsum(1) - 1).clamp(min=0)  # [B, P]
        hidden, past = self._run(prefix, real, positions, DynamicCache())
        return self._restrict(hidden[:, -1]), LMCache(past, real.sum(1))

    def extend(self, token: torch.Tensor, position: int, cache: LMCache, real: torch.Tensor) -> torch.Tensor:
        b = token.shape[0]
        x = self._action_embeds(token[:, None])  # [B, 1, D]
        mask = torch.cat([real, torch.ones(b, position, dtype=torch.bool, device=real.device)], dim=1)
        positions = (cache.lengths - 1 + position)[:, None]  # [B, 1]
        hidden, cache.past = self._run(x, mask, positions, cache.past)
        return self._restrict(hidden[:, -1])


__all__ = ["LMBinsHead", "LMCache", "action_token_ids"]
