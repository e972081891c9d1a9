"""Fine-tuning surgery: start from a checkpoint, fit new data, freeze or LoRA what should not move.

- The policy is rebuilt from the checkpoint's config with the *new* data's stats (normalization is
  the new data's) and its action/state dims; every tensor whose name and shape still fit is copied
  (`VLAPolicy.load_state_dict_partial`); the rest (a new robot's proprio input, the head's output
  layer) starts fresh and always trains.
- Embodiments: each new dataset is matched against the checkpoint's embodiments by its action and
  state spaces (names and control mode; simulator and widths where names are unknown). When every
  one is known (a new task or a new arm with the same controller), the policy keeps the
  checkpoint's padded widths and every tensor loads, the output layer included. When one is new (a
  space the generalist never saw), the embodiment layers - every tensor whose shape follows the
  action or state width, found by building the same config one wider on the meta device - start
  fresh even where their shapes happen to fit; the trunk and image encoder load. Both are printed.
  With per-embodiment layers (`model.embodiment_layers="separate"`), each known dataset's layers
  start from those of the generalist's embodiment it matches (same name first, else the first
  with the same spaces), one weight set per new dataset.
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


def source_record(spec: dict):
    """The pretrained checkpoint's `CheckpointRecord` (its embodiments)."""
    from vlaforge.models.io import CheckpointRecord
    from vlaforge.models.policy import METADATA_FILE, read_json, resolve_checkpoint

    path = resolve_checkpoint(spec["from"]) / METADATA_FILE
    return CheckpointRecord.from_metadata(read_json(path) if path.exists() else {})


def same_space(new, old) -> bool:
    """Do two `EmbodimentRecord`s act and sense in the same spaces (a new task or arm, same controller)?"""
    if new.action_names and old.action_names:
        return (new.action_names, new.state_names, new.control_mode) == (
            old.action_names,
            old.state_names,
            old.control_mode,
        )
    return (new.simulator, new.action_dim, new.state_dim) == (old.simulator, old.action_dim, old.state_dim)


def fit_embodiments(spec: dict, metadata: dict, policy_cfg, action_dim: int, state_dim: int):
    """(policy config with the widths to train at, names of the new data's unseen embodiments, the
    generalist's embodiment each new dataset continues or None).

    All known: the checkpoint's (padded) widths, so every layer loads, and per-embodiment layers
    start from the matched embodiment's (`prepare` reads the list as `spec["embodiment_rows"]`).
    Any unseen: the data's widths, and `spec["new_embodiments"]` tells `prepare` to start the
    embodiment layers fresh."""
    import dataclasses

    from vlaforge.models.io import CheckpointRecord

    old = source_record(spec).embodiments
    new = CheckpointRecord.from_metadata(metadata).embodiments
    unseen = [e.name for e in new if not any(same_space(e, o) for o in old)] if old else []
    if not old and (policy_cfg.action_dim, policy_cfg.state_dim) != (action_dim, state_dim):
        unseen = [e.name for e in new]  # an old checkpoint without a record: the widths decide
    count = max(len(new), 1)
    if unseen:
        cfg = dataclasses.replace(
            policy_cfg, action_dim=action_dim, state_dim=state_dim, num_embodiments=count
        )
        return cfg, unseen, None
    widths = max(policy_cfg.action_dim, action_dim), max(policy_cfg.state_dim, state_dim)
    cfg = dataclasses.replace(policy_cfg, action_dim=widths[0], state_dim=widths[1], num_embodiments=count)
    return cfg, [], [matched_embodiment(e, old) for e in new] if new else None


def matched_embodiment(new, old) -> int:
    """Index of the generalist's embodiment a known dataset continues: the same name, else the first
    with the same spaces (`same_space`); 0 for a checkpoint without a record."""
    for e in old:
        if e.name == new.name and same_space(new, e):
            return e.index
    return next((e.index for e in old if same_space(new, e)), 0)


def embodiment_rows(policy: nn.Module, state: dict, rows: list[int]) -> dict:
    """`state` with each per-embodiment tensor (`EmbodimentLinear`) re-indexed to the new datasets:
    new weight set i = the checkpoint's set rows[i] (the rest of `state` as is)."""
    from vlaforge.models.heads.common import EmbodimentLinear

    state = dict(state)
    for prefix, module in policy.named_modules():
        if not isinstance(module, EmbodimentLinear):
            continue
        for name, own in module.named_parameters(recurse=False):
            key = f"{prefix}.{name}"
            old = state.get(key)
            if old is None or tuple(old.shape[1:]) != tuple(own.shape[1:]) or max(rows) >= len(old):
                continue  # left to `load_state_dict_partial`: fresh where it does not fit
            state[key] = old[list(rows)]  # [E_new, ...]
    return state


def embodiment_tensors(policy: nn.Module) -> set[str]:
    """Names of the tensors whose shapes follow the action or state width (input/output layers)."""
    import dataclasses

    import torch

    from vlaforge.models.policy import NORM_PREFIXES

    cfg = policy.config
    wider = dataclasses.replace(
        cfg, action_dim=cfg.action_dim + 1, state_dim=cfg.state_dim + (cfg.state_dim > 0)
    )
    with torch.device("meta"):
        probe = type(policy)(wider).state_dict()
    own = policy.state_dict()
    return {
        k
        for k, v in own.items()
        if not k.startswith(NORM_PREFIXES) and (k not in probe or probe[k].shape != v.shape)
    }


def prepare(policy: nn.Module, spec: dict, verbose: bool = True) -> Callable[[nn.Module], nn.Module] | None:
    """Load the pretrained weights, freeze / add LoRA; returns the save-time export (LoRA merge)."""
    from vlaforge.models.policy import read_weights, resolve_checkpoint

    state = read_weights(resolve_checkpoint(spec["from"]))
    unseen = spec.get("new_embodiments") or []
    if unseen:  # a space the generalist never saw: its input/output layers start fresh
        fresh_layers = embodiment_tensors(policy)
        state = {k: v for k, v in state.items() if k not in fresh_layers}
    rows = spec.get("embodiment_rows")
    if rows:  # known embodiments: per-embodiment layers continue the matched generalist's sets
        state = embodiment_rows(policy, state, rows)
        if verbose and policy.config.embodiment_layers == "separate":
            pairs = ", ".join(f"dataset {i} <- embodiment {r}" for i, r in enumerate(rows))
            print(
                f"fine-tuning: per-embodiment layers start from the checkpoint's ({pairs})", file=sys.stderr
            )
    fresh = set(policy.load_state_dict_partial(state))
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
        report(policy, sorted(fresh_params), rank, unseen)
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


def report(policy: nn.Module, fresh: list[str], rank: int, unseen: list[str] = ()) -> None:
    trainable, total = trainable_counts(policy)
    if unseen:
        print(
            f"fine-tuning: new embodiment {', '.join(unseen)} (an action/state space the checkpoint never saw): "
            "fresh embodiment layers, the trunk and image encoder loaded",
            file=sys.stderr,
        )
    modules = policy.backbone.lora_modules(policy.config.backbone.lora_targets) if rank else []
    target = " + ".join(type(m).__name__ for m in modules)
    lora = f"; LoRA rank {rank} on the linear layers of the {target}" if rank else ""
    new = f"; fresh layers: {', '.join(fresh)}" if fresh else "; every pretrained tensor loaded"
    print(
        f"fine-tuning: trainable parameters {trainable:,} of {total:,} ({100 * trainable / total:.1f}%){lora}{new}",
        file=sys.stderr,
    )
