"""Activation (gradient) checkpointing of transformer layers (`train.grad_checkpointing`).

A module that supports it has a `grad_checkpointing` attribute (False by default) and runs each of
its layers through `checkpointed(self, fn, *args)`; `set_grad_checkpointing(model, True)` switches
every such module of a model. Checkpointing is exact: the forward values are the same and the
gradients equal up to float rounding, only the layers' activations are recomputed in backward
instead of kept. It applies in training mode with autograd recording only; evaluation and sampling
run the layers directly.

Modules that support it: our trunk's blocks (`models/trunk.py`), PaliGemma's SigLIP and Gemma layers
and pi0's expert layers (`models/backbones/paligemma.py`, `pi0_expert.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def checkpointed(owner: nn.Module, fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args), under non-reentrant `torch.utils.checkpoint` when `owner.grad_checkpointing` is set,
    `owner` is training and autograd records."""
    if getattr(owner, "grad_checkpointing", False) and owner.training and torch.is_grad_enabled():
        return checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


def set_grad_checkpointing(model: nn.Module, enabled: bool = True) -> int:
    """Switch checkpointing on (or off) in every submodule that supports it; returns how many."""
    owners = [m for m in model.modules() if hasattr(m, "grad_checkpointing")]
    for m in owners:
        m.grad_checkpointing = enabled
    return len(owners)
