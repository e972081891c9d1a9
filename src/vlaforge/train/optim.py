"""AdamW with decoupled weight decay on matrices only, and a linear-warmup + cosine schedule."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from vlaforge.train.config import TrainConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: matrices decay; biases, norm scales and embedding tables (names with "embed") do not."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and "embed" not in name else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters (frozen ones are left out entirely)."""
    groups = [g for g in param_groups(model, cfg.weight_decay) if g["params"]]
    if not groups:
        raise ValueError("the model has no trainable parameters")
    fused = all(p.is_cuda for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), fused=fused or None)


def lr_factor(step: int, total: int, warmup: int, min_ratio: float, clock: float = 0.0) -> float:
    """Multiplier of the peak lr for optimizer step `step` (0-based): linear warmup, then cosine.

    The warmup is capped at total // 5 so short runs still spend most steps near the peak. `clock`
    (the fraction of a wall-clock budget used, `train.lr_follows_clock`) advances the cosine when it
    is ahead of the steps; it never shortens the warmup.
    """
    warmup = min(warmup, total // 5)
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, max((step - warmup) / max(1, total - warmup - 1), clock))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, clock: Callable[[], float] | None = None
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-optimizer-step schedule; its state (last_epoch) is saved with the training state.
    `clock()` is the fraction of the time budget used, read at each step (`train.lr_follows_clock`)."""
    read = clock or (lambda: 0.0)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio, read())
    )
