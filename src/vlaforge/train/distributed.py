"""Data parallelism with torchrun + DDP (gloo on CPU, NCCL on CUDA); a no-op in a single process.

The same `vlaforge train ...` command runs alone or under a launcher that sets the usual variables
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT):

    torchrun --nproc_per_node 2 -m vlaforge.cli train ...          # 2 processes (CPU: gloo)
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_endpoint HOST:29500 -m vlaforge.cli train ...
    accelerate launch --multi_gpu --num_processes 8 -m vlaforge.cli train ...   (same variables)

Every process builds the same global batch from the same seeded loader and keeps its rows
(`Dist.rows`), so N processes see exactly the samples (and augmentation) of the single-process run
with the same `--batch-size`; DDP averages the gradients. Only rank 0 validates, logs and saves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from vlaforge.errors import VlaforgeError


@dataclass(frozen=True)
class Dist:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def rows(self, global_batch: int) -> slice:
        """This process's rows of a global batch (the batch must divide evenly)."""
        if global_batch % self.world_size:
            raise VlaforgeError(
                f"--batch-size {global_batch} does not divide over {self.world_size} processes"
            )
        per = global_batch // self.world_size
        return slice(self.rank * per, (self.rank + 1) * per)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a tensor over processes (itself when alone)."""
        if not self.enabled:
            return value
        value = value.detach().clone()
        dist.all_reduce(value)
        return value / self.world_size


def init_distributed(device: str | None = None) -> Dist:
    """Join the process group when launched by torchrun/accelerate; pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda" and not torch.cuda.is_available():
        raise VlaforgeError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")
    cuda = torch.cuda.is_available() and device != "cpu"
    dev = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return Dist(rank=rank, world_size=world, device=dev)


def wrap_ddp(module: torch.nn.Module, d: Dist) -> torch.nn.Module:
    """DDP around `module` when data-parallel; unused parameters (e.g. a head's sampling-only
    layers) are tolerated."""
    if not d.enabled:
        return module
    ids = [d.device.index] if d.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)


def shutdown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
