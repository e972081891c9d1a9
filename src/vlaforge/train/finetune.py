"""Fine-tuning surgery: start from a checkpoint, fit new data, freeze or LoRA what should not move.

- The policy is rebuilt from the checkpoint's config with the *new* data's stats (normalization is
  the new data's) and its action/state dims; every tensor whose name and shape still fit is copied
  (`VLAPolicy.load_state_dict_partial`); the rest (a new robot's proprio input, the head's output
  layer) starts fresh and always trains.
- `--freeze GLOB` (fnmatch on parameter names, e.g. `obs_encoder.*`, `trunk.*`) freezes matches.
- `--lora-rank R`: peft LoRA on the backbone's linear layers (`model.backbone.lora_targets`: the trunk /
  LM, the vision towers, or both); then only the adapters, the head and the
  fresh layers train. The checkpoint is saved with the adapters merged (a plain `VLAPolicy`).
"""

from __future__ import annotations

import fnmatch
import json
import sys
from collections.abc import Callable

from torch import nn

from vlaforge.config import apply_overrides, from_dict
from vlaforge.errors import VlaforgeError, did_you_mean
from vlaforge.train.lora import add_lora, is_lora_parameter, merged_copy


def base_config(spec: dict, model_over: list[str]):
    """The pretrained checkpoint's PolicyConfig with `model.*` overrides applied."""
    from vlaforge.models.config import PolicyConfig
    from vlaforge.models.policy import CONFIG_FILE, resolve_checkpoint

    src = resolve_checkpoint(spec["from"])
    if not (src / CONFIG_FILE).exists():
        raise VlaforgeError(f"--from {spec['from']}: not a policy checkpoint (no {CONFIG_FILE})")
    cfg = from_dict(PolicyConfig, json.loads((src / CONFIG_FILE).read_text()), where="config")
    return apply_overrides(cfg, model_over)


def prepare(policy: nn.Module, spec: dict, verbose: bool = True) -> Callable[[nn.Module], nn.Module] | None:
    """Load the pretrained weights, freeze / add LoRA; returns the save-time export (LoRA merge)."""
    from vlaforge.models.policy import read_weights, resolve_checkpoint

    fresh = set(policy.load_state_dict_partial(read_weights(resolve_checkpoint(spec["from"]))))
    fresh_params = {n for n, _ in policy.named_parameters() if n in fresh}
    freeze(policy, spec.get("freeze") or [])
    rank = spec.get("lora_rank") or 0
    if rank > 0:
        add_lora(policy, rank)
        for name, p in policy.named_parameters():
            p.requires_grad_(is_lora_parameter(name) or name.startswith("head.") or name in fresh_params)
    for name, p in policy.named_parameters():
        if name in fresh_params:
            p.requires_grad_(True)  # fresh layers are random: they must train
    if verbose:
        report(policy, sorted(fresh_params), rank)
    return merged_copy if rank > 0 else None


def freeze(policy: nn.Module, patterns: list[str]) -> None:
    """requires_grad=False on parameters matching any glob; a glob matching nothing is an error."""
    names = [n for n, _ in policy.named_parameters()]
    for pattern in patterns:
        hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            prefixes = sorted({n.split(".")[0] + ".*" for n in names})
            raise VlaforgeError(
                f"--freeze {pattern!r} matches no parameter{did_you_mean(pattern, prefixes)}; "
                f"top-level modules: {', '.join(prefixes)}"
            )
        for name, p in policy.named_parameters():
            if name in hits:
                p.requires_grad_(False)


def trainable_counts(policy: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = list(policy.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def report(policy: nn.Module, fresh: list[str], rank: int) -> None:
    trainable, total = trainable_counts(policy)
    modules = policy.backbone.lora_modules(policy.config.backbone.lora_targets) if rank else []
    target = " + ".join(type(m).__name__ for m in modules)
    lora = f"; LoRA rank {rank} on the linear layers of the {target}" if rank else ""
    new = f"; fresh layers: {', '.join(fresh)}" if fresh else "; every pretrained tensor loaded"
    print(
        f"fine-tuning: trainable parameters {trainable:,} of {total:,} ({100 * trainable / total:.1f}%){lora}{new}",
        file=sys.stderr,
    )
