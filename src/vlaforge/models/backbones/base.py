"""The `Backbone` interface: observation -> prefix tokens (+ per-layer K/V, + LM logits).

A backbone turns the policy's preprocessed inputs into what an action head reads:
- `images`: one uint8 tensor [B, T, H, W, C] per camera (the policy's cameras, in order);
- `texts`: B instruction strings; `state`: normalized proprio [B, T, S] or None;
- `obs_is_pad`: bool [B, T] (True = padded history step) or None; `goal`: uint8 [B, H, W, C] or None.

It returns a `BackboneOutput`, a `TrunkOutput` (what every `ActionHead` takes) plus:
- `layer_kv`: for a transformer VLM, one (keys, values) pair per prefix layer, each
  [B, P, kv_heads, head_dim] with RoPE already applied to the keys (what an action expert that
  attends layer by layer, as SmolVLA's and pi0's do, needs); None for our trunk.
- `logits()`: LM logits [B, P, V] over the prefix where the backbone has an LM head (None otherwise);
  computed on request, as most heads never need them.

Two implementations: `TrunkBackbone` (today's conv stem + sentence encoder + block-wise trunk, a view
over the policy's own modules so checkpoints keep their tensor names) and `SmolVLMBackbone`
(transformers SmolVLM / Idefics3, SmolVLA's VLM), and `PaliGemmaBackbone` (pi0's SigLIP + Gemma).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

from vlaforge.errors import VlaforgeError
from vlaforge.models.heads.base import TrunkOutput


@dataclass
class BackboneOutput(TrunkOutput):
    """`TrunkOutput` + per-layer prefix keys/values (see the module docstring)."""

    layer_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    lm_logits: torch.Tensor | None = None
    # The normalized last state [B, S] for a head that embeds it itself (pi0's expert state token).
    state: torch.Tensor | None = None


class Backbone(ABC):
    """Images (+ instruction, + state) -> `BackboneOutput` (module docstring)."""

    @property
    @abstractmethod
    def width(self) -> int:
        """D, the width of the prefix tokens and readouts."""

    @abstractmethod
    def encode(
        self,
        images: list[torch.Tensor],
        texts: list[str],
        state: torch.Tensor | None,
        obs_is_pad: torch.Tensor | None = None,
        goal: torch.Tensor | None = None,
        camera_mask: torch.Tensor | None = None,
        embodiment: torch.Tensor | None = None,
    ) -> BackboneOutput:
        """The prefix of one batch of observations. `camera_mask` [B, C] (True = the camera slot has
        an image; None = all do): a missing slot's tokens must not be attended to. `embodiment` [B]
        int64 (the dataset index, or None) picks per-embodiment layers where the policy has them
        (`model.embodiment_layers="separate"`, the trunk backbone); the output carries it on."""

    def logits(self, out: BackboneOutput) -> torch.Tensor | None:
        """LM logits [B, P, V] of the prefix tokens; None for a backbone without an LM head."""
        return out.lm_logits

    @abstractmethod
    def lora_target(self) -> nn.Module:
        """The module whose `nn.Linear` layers take LoRA adapters (`vlaforge finetune --lora-rank`)."""

    def lora_modules(self, targets: str = "lm") -> list[nn.Module]:
        """The modules adapted for `backbone.lora_targets` ("lm", "vision", "lm+vision"); a backbone
        without vision towers of its own adapts `lora_target()` and refuses "vision"."""
        if targets != "lm":
            raise VlaforgeError(
                f"backbone.lora_targets={targets!r}: the {type(self).__name__} has no vision tower to adapt (use lm)"
            )
        return [self.lora_target()]
