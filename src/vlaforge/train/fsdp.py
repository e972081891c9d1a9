"""Fully sharded data parallel (`train.fsdp=true`): torch's FSDP2 (`fully_shard`), gloo on CPU.

Under torchrun (or `accelerate launch`, which sets the same variables) with `train.fsdp=true`, each
process keeps 1/N of every parameter, gradient and optimizer state instead of a full replica (DDP).
We call torch's `fully_shard` directly, not through accelerate's `Accelerator`: accelerate's FSDP
plugin wraps the same function but would take over our loader, optimizer and launcher-agnostic
`Dist` (`train/distributed.py`); the launch command is the same either way.

Shard units (`shard_units`): the layers of every `nn.ModuleList` named `layers` or `blocks` (our
trunk's blocks, SigLIP's, Gemma's, the action experts'). FSDP gathers a unit's parameters in that
module's `forward`, and the VLM paths call a transformer layer's projections one by one (they return
its keys/values for the expert), so a layer with `self_attn` is sharded as its attention projections
and its MLP; a layer called whole (a trunk block) is one unit. Everything else (embeddings, norms,
state/action projections) belongs to the root unit, the `LossModule`.

Checkpoints: every process takes part in gathering the full state (`full_state`), then rank 0
validates and saves an ordinary, unsharded policy (`full_copy`): the checkpoint loads in one process
like any other. Gradients are averaged over processes as with DDP, so N processes reproduce the
single-process run with the same global batch. Limits: EMA is off (train.ema_decay=0) and gradient
accumulation reduce-scatters every micro-batch.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from vlaforge.train.distributed import Dist

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "out_proj")


def shard_units(model: nn.Module) -> list[nn.Module]:
    """The modules `wrap_fsdp` shards separately (module docstring), outermost first."""
    units: list[nn.Module] = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or name.rsplit(".", 1)[-1] not in ("layers", "blocks"):
            continue
        for layer in module:
            attn = getattr(layer, "self_attn", None)
            if attn is None:
                units.append(layer)
                continue
            units += [getattr(attn, p) for p in PROJECTIONS if isinstance(getattr(attn, p, None), nn.Module)]
            units += [layer.mlp] if isinstance(getattr(layer, "mlp", None), nn.Module) else []
    return units


def wrap_fsdp(module: nn.Module, d: Dist) -> nn.Module:
    """`module` with its shard units and then itself under `fully_shard` over all processes."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    # Our layers never modify a projection's output in place (checked by the parity test against
    # one process), so FSDP2's warning about Linear outputs being views is noise here.
    warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
    mesh = init_device_mesh(d.device.type, (d.world_size,))
    for unit in shard_units(module):
        fully_shard(unit, mesh=mesh)
    return fully_shard(module, mesh=mesh)


def _options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """(model, optimizer) full state dicts on rank 0 ({} elsewhere); every process must call it."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    options = _options()
    return get_model_state_dict(model, options=options), get_optimizer_state_dict(
        model, optimizer, options=options
    )


def load_full_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict, optim: dict) -> None:
    """Shard full (model, optimizer) state dicts of `full_state` into the wrapped model on every process."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))
    # Parameters that never got a gradient (e.g. the last VLM layer's queries and MLP, which no
    # action token reads) have no optimizer state to restore.
    set_optimizer_state_dict(
        model, optimizer, optim, options=StateDictOptions(full_state_dict=True, strict=False)
    )


def full_copy(policy: nn.Module, state: dict[str, Any]) -> nn.Module:
    """An unsharded policy like `policy` holding `state` (its keys without the `policy.` prefix)."""
    from vlaforge.models.backbones import no_pretrained_weights

    with no_pretrained_weights():  # the weights come from `state`, not from backbone.id's files
        copy = type(policy)(policy.config, stats=policy.stats, metadata=policy.metadata)
    copy.load_state_dict(state)
    return copy.to(torch.device("cpu"))
