"""LoRA on the trunk's linear layers through `peft`, merged back into plain weights on save.

`add_lora(policy, rank)` injects peft LoRA adapters (`peft.inject_adapter_in_model`) into every
`nn.Linear` of `policy.backbone.lora_modules(config.backbone.lora_targets)` - our trunk (attention
qkv/proj and the MLP), a VLM backbone's text model / LM (q/k/v/o and MLP projections; "lm"), its
vision tower(s) ("vision": prismatic's SigLIP, DINOv2 and projector, SmolVLM's tower and connector)
or both ("lm+vision", OpenVLA's all-linear recipe) - which freezes those base weights;
`merged_copy(module)` returns a deep copy in which each adapter is merged into its base layer
(`LoraLayer.merge`) and the wrapper replaced by that layer, so the saved checkpoint has exactly the
tensor names of a plain `VLAPolicy` and loads with `from_pretrained`.
"""

from __future__ import annotations

import copy

from torch import nn


def trunk_linear_names(trunk: nn.Module) -> list[str]:
    """Names (relative to the trunk) of its linear layers: the LoRA targets."""
    return [name for name, m in trunk.named_modules() if isinstance(m, nn.Linear)]


def add_lora(policy: nn.Module, rank: int, alpha: float | None = None, dropout: float = 0.0) -> list[str]:
    """Inject LoRA (rank `rank`, alpha default `model.backbone.lora_alpha` or 2*rank) into the linears
    of the backbone's LoRA modules (`model.backbone.lora_targets`); returns the adapted names."""
    from peft import LoraConfig, inject_adapter_in_model

    alpha = alpha or policy.config.backbone.lora_alpha or None
    adapted = []
    for module in policy.backbone.lora_modules(policy.config.backbone.lora_targets):
        targets = trunk_linear_names(module)
        if not targets:
            raise ValueError(f"the {type(module).__name__} has no linear layers to adapt")
        config = LoraConfig(
            r=rank, lora_alpha=alpha or 2 * rank, lora_dropout=dropout, target_modules=targets, bias="none"
        )
        inject_adapter_in_model(config, module)
        adapted += targets
    return adapted


def is_lora_parameter(name: str) -> bool:
    return "lora_" in name


def merge_lora(module: nn.Module) -> nn.Module:
    """Merge every LoRA adapter into its base layer in place and unwrap it; returns `module`."""
    from peft.tuners.lora import LoraLayer

    wrapped = [(name, m) for name, m in module.named_modules() if isinstance(m, LoraLayer)]
    for name, layer in wrapped:
        layer.merge(safe_merge=True)
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, child, layer.get_base_layer())
    return module


def merged_copy(module: nn.Module) -> nn.Module:
    """A deep copy with adapters merged (the original keeps training with its adapters)."""
    return merge_lora(copy.deepcopy(module))
