"""`vlaforge presets`: the preset table with parameter counts.

Trainable parameters are counted on the built policy (encoders, trunk, head; normalization buffers
are not parameters; frozen weights - a pretrained image encoder kept frozen, a frozen VLM - are in
`total_M` only, so total_M - trainable_M is what is saved but not trained). The frozen text encoder of
the trunk presets is counted separately: it is shared, never trained and not saved in checkpoints.
VLM presets (`smolvla*`) are counted on the meta device from their inline sizes; their "trunk" column
reads used/total text layers x width.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class PresetsConfig:
    """`vlaforge presets`."""

    json: bool = False
    """Print JSON instead of a table."""


def _image(cfg) -> str:
    """`1x64px/16` (conv stem, 16 px patches) or `1x64px/effnet-lite0@16` (pretrained, stride 16)."""
    icfg = cfg.image
    if icfg.encoder == "conv":
        return f"{len(cfg.cameras)}x{cfg.image_size}px/{icfg.patch_size}"
    return f"{len(cfg.cameras)}x{cfg.image_size}px/{icfg.encoder.replace('efficientnet', 'effnet')}@{icfg.feature_stride}"


def preset_rows() -> list[dict]:
    """One dict per preset: name, head, image, trunk, chunk, history, trainable and frozen params."""
    from vlaforge.models.language import text_model_parameters
    from vlaforge.models.policy import VLAPolicy
    from vlaforge.models.presets import ALIASES, PRESETS

    rows = []
    for name, cfg in PRESETS.items():
        trunk = cfg.backbone.kind == "trunk"
        total, trainable = _counts(VLAPolicy, cfg)
        aliases = [a for a, target in ALIASES.items() if target == name]
        rows.append({
            "preset": name + (f" ({', '.join(aliases)})" if aliases else ""),
            "head": cfg.head.kind,
            "image": _image(cfg) if trunk else _vlm_image(cfg),
            "trunk": f"{cfg.trunk.depth}x{cfg.trunk.width}" if trunk else _vlm_trunk(cfg),
            "history": cfg.history,
            "chunk": cfg.chunk,
            "norm": cfg.normalization,
            "trainable_M": round(trainable / 1e6, 2),
            "total_M": round(total / 1e6, 2),
            "frozen_text_M": round(text_model_parameters(cfg.language.model) / 1e6, 2) if trunk else 0.0,
        })  # fmt: skip
    return rows


def _counts(policy_cls, cfg) -> tuple[int, int]:
    """(all, trainable) parameters. A VLM preset is built on the meta device from its inline sizes
    (no memory, no files: its `backbone.id` need not be on this machine)."""
    if cfg.backbone.kind == "trunk":
        n = sum(p.numel() for p in policy_cls(cfg).parameters())
        return n, n
    import dataclasses

    import torch

    from vlaforge.models.backbones import no_pretrained_weights

    inline = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, id=""))
    with torch.device("meta"), no_pretrained_weights():
        params = list(policy_cls(inline).parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def _vlm_image(cfg) -> str:
    bb = cfg.backbone
    return f"{len(cfg.cameras)}x{bb.vision_image_size}px/{bb.vision_patch}"


def _vlm_trunk(cfg) -> str:
    bb = cfg.backbone
    return f"{bb.num_vlm_layers or bb.text_layers}/{bb.text_layers}x{bb.text_width}"


def run(cfg: PresetsConfig) -> int:
    """Print the preset table (or JSON); returns 0."""
    rows = preset_rows()
    if cfg.json:
        print(json.dumps(rows, indent=2))
        return 0
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in cols))
    from vlaforge.models.presets import DEFAULT_PRESET

    print(f"\ndefault: {DEFAULT_PRESET}; frozen_text = the shared sentence encoder (not trained, not saved)")
    return 0
