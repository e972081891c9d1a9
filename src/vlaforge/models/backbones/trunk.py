"""`TrunkBackbone`: today's trunk path behind the `Backbone` interface.

A view over the policy's own `obs_encoder`, `task_encoder` and `trunk` modules: it registers
nothing, so existing presets and checkpoints keep their tensor names (`obs_encoder.*`, `trunk.*`)
and behave exactly as before. It has no LM, so `logits` is None and `layer_kv` is None.
"""

from __future__ import annotations

from vlaforge.models.backbones.base import Backbone, BackboneOutput
from vlaforge.models.encoders import ObservationEncoder, TaskEncoder
from vlaforge.models.trunk import Trunk


class TrunkBackbone(Backbone):
    """Conv stem patch tokens + frozen sentence-encoder task tokens -> block-wise trunk."""

    def __init__(self, obs_encoder: ObservationEncoder, task_encoder: TaskEncoder, trunk: Trunk) -> None:
        self.obs_encoder, self.task_encoder, self.trunk = obs_encoder, task_encoder, trunk

    @property
    def width(self) -> int:
        return self.trunk.readouts.shape[-1]

    def lora_target(self) -> Trunk:
        return self.trunk

    def encode(
        self, images, texts, state, obs_is_pad=None, goal=None, camera_mask=None, embodiment=None
    ) -> BackboneOutput:
        task_tokens, film = self.task_encoder.encode(texts, goal)  # [B, L, D], [B, F] or None
        obs_tokens = self.obs_encoder(images, state, embodiment, film)  # [B, T, K, D]
        step_mask = None if camera_mask is None else self.obs_encoder.token_mask(camera_mask)  # [B, K]
        out = self.trunk(task_tokens, obs_tokens, obs_is_pad, step_mask)
        return BackboneOutput(out.readouts, out.tokens, out.token_mask, embodiment=embodiment)


__all__ = ["TrunkBackbone"]
