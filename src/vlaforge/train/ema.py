"""Exponential moving average of a model's weights, kept as a full copy of the module.

Keeping a whole module (rather than a dict of tensors) means validation and `save_pretrained` run on
the EMA copy directly. Floating-point parameters and buffers are averaged; integer buffers are copied.
Decay warms up as min(decay, (1 + n) / (10 + n)) over the n updates so far (as in Octo / timm), so
an early checkpoint is not dominated by the random initialisation.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """`ema.update(model)` after each optimizer step; `ema.module` is the averaged copy."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_state = self.module.state_dict(keep_vars=True)
        floats, targets = [], []
        for name, value in model.state_dict(keep_vars=True).items():
            target = ema_state[name]
            if target.dtype.is_floating_point:
                floats.append(value.data)
                targets.append(target.data)
            else:
                target.data.copy_(value.data)
        if floats:
            torch._foreach_lerp_(targets, floats, 1.0 - self.current_decay())
        self.updates += 1

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "module": self.module.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.decay = state["decay"]
        self.updates = state["updates"]
        self.module.load_state_dict(state["module"])
