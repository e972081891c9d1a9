"""Backbones: what turns an observation into the prefix an action head reads (`base.Backbone`).

| backbone.kind | module        | prefix                                            | heads                 |
| ------------- | ------------- | ------------------------------------------------- | --------------------- |
| `trunk`       | trunk.py      | conv-stem patches + sentence-encoder task tokens, block-wise trunk | every `heads/` kind |
| `smolvlm`     | smolvlm.py    | SmolVLM (transformers) image + text + state tokens, first N layers | `smolvla-expert` |
| `prismatic`   | prismatic.py  | OpenVLA: SigLIP + DINOv2 patches -> MLP projector, BOS + prompt embeddings | `lm-bins` (lm_actions.py) |
| `paligemma`   | paligemma.py  | PaliGemma (transformers) image + text tokens, every Gemma layer | `pi0-expert` |

`build_vlm(cfg)` returns a VLM backbone and the head built on its layout; the trunk path stays in
`VLAPolicy` (its modules keep their checkpoint names) behind `trunk.TrunkBackbone`.
"""

from __future__ import annotations

from vlaforge.models.backbones.base import Backbone, BackboneOutput
from vlaforge.models.backbones.lm_actions import LMBinsHead
from vlaforge.models.backbones.paligemma import PaliGemmaBackbone
from vlaforge.models.backbones.pi0_expert import Pi0ExpertHead
from vlaforge.models.backbones.prismatic import PrismaticBackbone
from vlaforge.models.backbones.smolvla_expert import SmolVLAExpertHead
from vlaforge.models.backbones.smolvlm import SmolVLMBackbone, no_pretrained_weights
from vlaforge.models.backbones.trunk import TrunkBackbone
from vlaforge.models.config import PolicyConfig
from vlaforge.models.heads.base import ActionHead
from vlaforge.models.heads.flow import _flow_kwargs


def build_vlm(cfg: PolicyConfig) -> tuple[Backbone, ActionHead]:
    """The VLM backbone of `cfg` (`smolvlm`, `prismatic`, `paligemma`) and the head built on its layout."""
    if cfg.backbone.kind == "prismatic":
        return build_prismatic(cfg)
    if cfg.backbone.kind == "paligemma":
        return build_pi0(cfg)
    backbone = SmolVLMBackbone(cfg.backbone, cfg.state_dim)
    head = SmolVLAExpertHead(
        backbone.text_config, cfg.backbone, backbone.num_layers, cfg.action_dim, cfg.chunk,
        **_flow_kwargs(cfg.head),
    )  # fmt: skip
    return backbone, head


def build_prismatic(cfg: PolicyConfig) -> tuple[PrismaticBackbone, LMBinsHead]:
    """OpenVLA: the `prismatic` backbone and its `lm-bins` head (the LM's own action tokens)."""
    backbone = PrismaticBackbone(cfg.backbone)
    head = LMBinsHead(backbone, cfg.action_dim, cfg.chunk, cfg.head.num_bins, cfg.head.temperature)
    return backbone, head


def build_pi0(cfg: PolicyConfig) -> tuple[PaliGemmaBackbone, Pi0ExpertHead]:
    """The `paligemma` backbone of `cfg` and its `pi0-expert` head."""
    backbone = PaliGemmaBackbone(cfg.backbone)
    head = Pi0ExpertHead(
        backbone.text_config, cfg.backbone, cfg.state_dim, cfg.action_dim, cfg.chunk, **_flow_kwargs(cfg.head)
    )
    return backbone, head


__all__ = [
    "LMBinsHead",
    "PrismaticBackbone",
    "Backbone",
    "BackboneOutput",
    "PaliGemmaBackbone",
    "Pi0ExpertHead",
    "SmolVLAExpertHead",
    "SmolVLMBackbone",
    "TrunkBackbone",
    "build_vlm",
    "no_pretrained_weights",
]
